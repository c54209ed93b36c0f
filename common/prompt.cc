#include "common/prompt.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace llava {
namespace {

struct StyleText {
  std::string prefix;          // before the image
  std::string after_question;  // between the question and the answer
};

StyleText TextFor(PromptStyle style) {
  if (style == PromptStyle::kLlama31Chat) {
    // What the checkpoint's chat_template renders for a conversation with no system
    // message (the template always writes the knowledge-cutoff lines).
    return {
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n",
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"};
  }
  return {
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|><|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>",
      "<|start_header_id|>assistant<|end_header_id|>"};
}

}  // namespace

absl::StatusOr<PromptBuilder> PromptBuilder::Create(const Tokenizer& tok,
                                                    const PromptConfig& config) {
  LM_RETURN_IF_ERROR(config.Validate());
  PromptBuilder b;
  b.config_ = config;
  const StyleText text = TextFor(config.style);
  LM_ASSIGN_OR_RETURN(b.prefix_, tok.Encode(text.prefix));
  for (const std::string& q : config.questions) {
    LM_ASSIGN_OR_RETURN(std::vector<int64_t> ids, tok.Encode(q + text.after_question));
    b.question_suffix_.push_back(std::move(ids));
  }
  for (const std::string& tmpl : config.answer_templates) {
    std::vector<std::vector<int64_t>> per_label;
    for (int64_t label = 0; label < config.num_labels; ++label) {
      const std::string answer =
          absl::StrReplaceAll(tmpl, {{"{label}", std::to_string(label)}}) + "<|eot_id|>";
      LM_ASSIGN_OR_RETURN(std::vector<int64_t> ids, tok.Encode(answer));
      per_label.push_back(std::move(ids));
    }
    b.answers_.push_back(std::move(per_label));
  }
  for (const char* stop : {"<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"}) {
    if (auto id = tok.TokenToId(stop)) b.stop_ids_.push_back(*id);
  }
  if (b.stop_ids_.empty()) {
    return absl::InvalidArgumentError("tokenizer has no <|eot_id|> or <|end_of_text|> token");
  }
  // Padding and image slots are never attended to by a real position (or are
  // overwritten by the image embedding), so any valid id serves: use end-of-text.
  b.pad_id_ = tok.TokenToId("<|end_of_text|>").value_or(b.stop_ids_.front());
  return b;
}

PromptBatch PromptBuilder::Build(const std::vector<PromptSample>& samples) const {
  const int64_t b = static_cast<int64_t>(samples.size());
  const int64_t k = config_.image_tokens;
  const int64_t image_pos = static_cast<int64_t>(prefix_.size());
  int64_t t = 0;
  for (const PromptSample& s : samples) {
    LM_CHECK(s.question >= 0 && s.question < static_cast<int64_t>(question_suffix_.size()));
    LM_CHECK(s.answer_template >= 0 && s.answer_template < static_cast<int64_t>(answers_.size()));
    LM_CHECK(s.label >= 0 && s.label < config_.num_labels) << s.label;
    t = std::max<int64_t>(t, image_pos + k + question_suffix_[s.question].size() +
                                 answers_[s.answer_template][s.label].size());
  }
  PromptBatch out;
  out.image_position = image_pos;
  out.image_tokens = k;
  out.ids = at::full({b, t}, pad_id_, at::kLong);
  out.labels = at::full({b, t}, -100, at::kLong);
  int64_t* ids = out.ids.data_ptr<int64_t>();
  int64_t* labels = out.labels.data_ptr<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    const PromptSample& s = samples[r];
    int64_t* row = ids + r * t;
    int64_t pos = 0;
    for (int64_t id : prefix_) row[pos++] = id;
    pos += k;  // image slots
    for (int64_t id : question_suffix_[s.question]) row[pos++] = id;
    out.answer_begin.push_back(pos);
    for (int64_t id : answers_[s.answer_template][s.label]) {
      labels[r * t + pos] = id;
      row[pos++] = id;
    }
    out.answer_end.push_back(pos);
  }
  return out;
}

GenerationPrompt PromptBuilder::BuildGeneration(int64_t question) const {
  LM_CHECK(question >= 0 && question < static_cast<int64_t>(question_suffix_.size()));
  const int64_t k = config_.image_tokens;
  std::vector<int64_t> ids = prefix_;
  ids.insert(ids.end(), k, pad_id_);
  ids.insert(ids.end(), question_suffix_[question].begin(), question_suffix_[question].end());
  GenerationPrompt out;
  out.ids = at::tensor(ids, at::kLong).view({1, -1});
  out.image_position = static_cast<int64_t>(prefix_.size());
  out.image_tokens = k;
  return out;
}

}  // namespace llava
