// The multimodal prompt: the experiment's format (default) or the official Llama 3.1 chat
// template, any list of question phrasings and answer templates, image slots, and the
// label mask that takes the loss on the answer only. Fixed parts are tokenized once in
// PromptBuilder::Create; building a batch only concatenates ids. Immutable after Create,
// so const methods are thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/prompt_config.h"
#include "common/tokenizer.h"

namespace llava {

// One sample of a batch: which question and answer template, and the label.
struct PromptSample {
  int64_t question = 0;
  int64_t answer_template = 0;
  int64_t label = 0;
};

// A batch of prompts as token ids, right-padded: causal attention never lets a padded
// position influence an earlier one, so padding at the end needs no attention mask.
struct PromptBatch {
  at::Tensor ids;              // [B, T] int64; image slots and padding hold pad_id
  at::Tensor labels;           // [B, T] int64; -100 except the answer tokens (ids there)
  int64_t image_position = 0;  // first image slot, the same for every row
  int64_t image_tokens = 1;
  std::vector<int64_t> answer_begin;  // per row: position of the first answer token
  std::vector<int64_t> answer_end;    // per row: one past the last answer token
};

// Prompts for generation (no answer): every row shares one question, so rows have equal
// length and generation needs no padding.
struct GenerationPrompt {
  at::Tensor ids;  // [1, T] int64; image slots hold pad_id
  int64_t image_position = 0;
  int64_t image_tokens = 1;
};

class PromptBuilder {
 public:
  static absl::StatusOr<PromptBuilder> Create(const Tokenizer& tokenizer,
                                              const PromptConfig& config);

  const PromptConfig& config() const { return config_; }
  PromptBatch Build(const std::vector<PromptSample>& samples) const;
  GenerationPrompt BuildGeneration(int64_t question) const;

  // Ids of the answer for (template, label), <|eot_id|> included.
  const std::vector<int64_t>& AnswerIds(int64_t answer_template, int64_t label) const {
    return answers_[answer_template][label];
  }
  // Generation stops at these (<|eot_id|>, <|end_of_text|>, <|eom_id|> where present).
  const std::vector<int64_t>& stop_ids() const { return stop_ids_; }
  int64_t pad_id() const { return pad_id_; }

 private:
  PromptConfig config_;
  std::vector<int64_t> prefix_;                             // before the image
  std::vector<std::vector<int64_t>> question_suffix_;       // per question: after the image
  std::vector<std::vector<std::vector<int64_t>>> answers_;  // [template][label]
  std::vector<int64_t> stop_ids_;
  int64_t pad_id_ = 0;
};

}  // namespace llava
