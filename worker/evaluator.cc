#include "worker/evaluator.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/answer_metric.h"
#include "common/status_macros.h"
#include "common/vlm.h"

namespace llava {
namespace {

// Decodes a generated answer without its stop token.
absl::StatusOr<std::string> DecodeAnswer(const Tokenizer& tok, const PromptBuilder& prompts,
                                         std::vector<int64_t> ids) {
  const std::vector<int64_t>& stops = prompts.stop_ids();
  auto stop = std::find_if(ids.begin(), ids.end(), [&](int64_t id) {
    return std::find(stops.begin(), stops.end(), id) != stops.end();
  });
  ids.erase(stop, ids.end());
  return tok.Decode(ids);
}

GenerateParams ParamsFor(const EvalConfig& config, const PromptBuilder& prompts) {
  GenerateParams params;
  params.max_new_tokens = config.max_new_tokens;
  params.eos_token_ids = prompts.stop_ids();
  params.stop_at_eos = config.stop_at_eos;
  return params;
}

}  // namespace

absl::Status EvalConfig::Validate() const {
  if (batch_size <= 0) return absl::InvalidArgumentError("eval batch_size must be > 0");
  if (max_new_tokens <= 0) return absl::InvalidArgumentError("max_new_tokens must be > 0");
  return absl::OkStatus();
}

absl::Status EvaluateRange(const EvalInputs& in, int64_t begin, int64_t end,
                           const EvalConfig& config, EvalReport* report,
                           const std::function<void(int64_t, int64_t)>& on_batch) {
  LM_RETURN_IF_ERROR(config.Validate());
  if (begin < 0 || end > in.images->size() || begin > end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval range [", begin, ", ", end, ") is outside the ", in.images->size(), " images"));
  }
  at::NoGradGuard no_grad;
  const LlamaModel& model = *in.model;
  const int64_t questions = static_cast<int64_t>(in.prompts->config().questions.size());
  const GenerateParams params = ParamsFor(config, *in.prompts);
  const int64_t total = (end - begin) * questions;
  int64_t done = 0;
  std::unique_ptr<PromptPrefix> prefix;  // shared by the questions while their prefix is
  for (int64_t q = 0; q < questions; ++q) {
    const GenerationPrompt prompt = in.prompts->BuildGeneration(q);
    if (config.reuse_prefix_kv &&
        (prefix == nullptr || !PrefixMatches(*prefix, prompt.ids, prompt.image_position))) {
      prefix = std::make_unique<PromptPrefix>(
          ComputePromptPrefix(model, in.forward, prompt.ids, prompt.image_position));
    }
    for (int64_t b = begin; b < end; b += config.batch_size) {
      const int64_t e = std::min(end, b + config.batch_size);
      at::Tensor pixels = ImagesToTensor(*in.images, b, e).to(model.device);  // [n, 784]
      at::Tensor image = (*in.projector)->forward(pixels);                    // [n, k, D]
      std::vector<std::vector<int64_t>> answers =
          GenerateAnswers(model, in.forward, prompt, image, params, prefix.get());
      for (int64_t i = 0; i < e - b; ++i) {
        LM_ASSIGN_OR_RETURN(std::string text,
                            DecodeAnswer(*in.tokenizer, *in.prompts, std::move(answers[i])));
        EvalSample s;
        s.index = b + i;
        s.question = q;
        s.label = in.images->labels[b + i];
        s.predicted = ParseAnswerDigit(text);
        s.answer = std::move(text);
        report->Add(std::move(s));
      }
      done += e - b;
      if (on_batch) on_batch(done, total);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> AnswerOne(const EvalInputs& in, const at::Tensor& pixels,
                                      int64_t question, const EvalConfig& config) {
  at::NoGradGuard no_grad;
  const GenerationPrompt prompt = in.prompts->BuildGeneration(question);
  at::Tensor image = (*in.projector)->forward(pixels.reshape({1, -1}).to(in.model->device));
  std::vector<std::vector<int64_t>> answers =
      GenerateAnswers(*in.model, in.forward, prompt, image, ParamsFor(config, *in.prompts));
  return DecodeAnswer(*in.tokenizer, *in.prompts, std::move(answers[0]));
}

}  // namespace llava
