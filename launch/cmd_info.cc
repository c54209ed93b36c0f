#include "launch/cmd_info.h"

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/elapsed.h"
#include "common/llama_forward.h"
#include "common/llama_generate.h"
#include "common/status_macros.h"
#include "common/tokenizer.h"
#include "launch/flags_common.h"

ABSL_FLAG(std::string, text, "", "tokenize: the text to encode");
ABSL_FLAG(std::string, ids, "", "tokenize: comma-separated ids to decode instead");
ABSL_FLAG(std::string, prompt, "", "generate: the prompt text (special tokens allowed)");
ABSL_FLAG(bool, check_backward, false,
          "info: also run a forward and backward pass to the input embeddings and report "
          "time and peak GPU memory");

namespace llava {
namespace {

// One forward and backward pass of a batch of 24-token sequences, to the input
// embeddings only (the weights are frozen): proves the model runs where it was loaded.
void CheckBackward(const LlamaModel& m, const ForwardOptions& forward) {
  const int64_t b = 4, t = 24;
  at::Tensor embeds =
      at::randn({b, t, m.config.hidden_size}, at::TensorOptions().device(m.device)) * 0.02;
  embeds.requires_grad_(true);
  const auto start = std::chrono::steady_clock::now();
  at::Tensor hidden = DecoderForward(m, forward, embeds);
  at::Tensor logits = LmHeadLogits(m, hidden.narrow(1, t - 8, 8));
  at::Tensor loss = logits.to(at::kFloat).logsumexp(-1).mean();
  loss.backward();
  const double norm = embeds.grad().norm().item<double>();  // synchronizes
  std::cout << "forward+backward [" << b << ", " << t << "]: loss " << loss.item<float>()
            << ", |grad inputs_embeds| " << norm << ", " << SecondsSince(start) << " s\n";
}

}  // namespace

absl::Status RunInfo(const std::vector<char*>&) {
  LM_ASSIGN_OR_RETURN(ModelOptions options, ModelOptionsFromFlags());
  LM_ASSIGN_OR_RETURN(const ForwardOptions forward, ForwardOptionsFromFlags());
  const auto start = std::chrono::steady_clock::now();
  LM_ASSIGN_OR_RETURN(std::unique_ptr<const LlamaModel> model,
                      LoadLlama(absl::GetFlag(FLAGS_model), options));
  std::cout << "model:  " << model->source << "\n"
            << "config: " << DescribeConfig(model->config) << "\n"
            << "device: " << model->device << ", dtype " << at::toString(model->dtype)
            << ", weights " << WeightFormatName(model->format) << " ("
            << static_cast<double>(WeightBytes(*model)) / (1ull << 30) << " GiB)\n"
            << "load:   " << SecondsSince(start) << " s\n";
  if (absl::GetFlag(FLAGS_check_backward)) CheckBackward(*model, forward);
  return absl::OkStatus();
}

absl::Status RunTokenize(const std::vector<char*>&) {
  LM_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Load(absl::GetFlag(FLAGS_tokenizer)));
  const std::string ids_text = absl::GetFlag(FLAGS_ids);
  if (!ids_text.empty()) {
    std::vector<int64_t> ids;
    for (absl::string_view part : absl::StrSplit(ids_text, ',', absl::SkipWhitespace())) {
      int64_t id;
      if (!absl::SimpleAtoi(part, &id)) {
        return absl::InvalidArgumentError("--ids: '" + std::string(part) + "' is not an integer");
      }
      ids.push_back(id);
    }
    LM_ASSIGN_OR_RETURN(std::string text, tok.Decode(ids));
    std::cout << text << "\n";
    return absl::OkStatus();
  }
  LM_ASSIGN_OR_RETURN(std::vector<int64_t> ids, tok.Encode(absl::GetFlag(FLAGS_text)));
  std::cout << absl::StrJoin(ids, ",") << "\n";
  return absl::OkStatus();
}

absl::Status RunGenerate(const std::vector<char*>&) {
  LM_ASSIGN_OR_RETURN(ModelOptions options, ModelOptionsFromFlags());
  LM_ASSIGN_OR_RETURN(const ForwardOptions forward, ForwardOptionsFromFlags());
  LM_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Load(absl::GetFlag(FLAGS_tokenizer)));
  LM_ASSIGN_OR_RETURN(std::vector<int64_t> prompt, tok.Encode(absl::GetFlag(FLAGS_prompt)));
  if (prompt.empty()) return absl::InvalidArgumentError("--prompt is empty");
  LM_ASSIGN_OR_RETURN(std::unique_ptr<const LlamaModel> model,
                      LoadLlama(absl::GetFlag(FLAGS_model), options));
  for (int64_t id : prompt) {
    if (id >= model->config.vocab_size) {
      return absl::InvalidArgumentError("the prompt's token " + std::to_string(id) +
                                        " is outside the model's vocabulary");
    }
  }
  GenerateParams params;
  params.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  if (params.max_new_tokens <= 0) return absl::InvalidArgumentError("--max_new_tokens must be > 0");
  at::Tensor ids = at::tensor(prompt, at::kLong).view({1, -1});
  std::vector<std::vector<int64_t>> out = GreedyGenerate(*model, forward, ids, params);
  LM_ASSIGN_OR_RETURN(std::string text, tok.Decode(out[0]));
  std::cout << text << "\n";
  return absl::OkStatus();
}

}  // namespace llava
