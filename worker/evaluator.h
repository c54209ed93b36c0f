// Evaluation of a projector through the frozen Llama on one device: batched greedy
// answers for a range of images under each question, scored with the experiment's
// metric into an EvalReport (which merges across workers). One owner thread.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "common/eval_report.h"
#include "common/forward_options.h"
#include "common/llama_weights.h"
#include "common/mnist_idx.h"
#include "common/projector.h"
#include "common/prompt.h"
#include "common/tokenizer.h"

namespace llava {

struct EvalConfig {
  int64_t batch_size = 100;
  int64_t max_new_tokens = 20;
  bool stop_at_eos = true;
  // Compute the prompt's fixed prefix (before the image) once per call and decode each
  // batch from the image position on (exact; false runs the whole prompt, for measuring).
  bool reuse_prefix_kv = true;
  absl::Status Validate() const;
};

struct EvalInputs {
  const LlamaModel* model = nullptr;
  Projector* projector = nullptr;
  const PromptBuilder* prompts = nullptr;  // its questions are the ones evaluated
  const Tokenizer* tokenizer = nullptr;
  const MnistSet* images = nullptr;
  ForwardOptions forward;  // how the model computes the answers
};

// Answers images [begin, end) of inputs.images under every question and adds each to
// `report`. `on_batch(done, total)` is called after every batch (may be empty).
absl::Status EvaluateRange(const EvalInputs& inputs, int64_t begin, int64_t end,
                           const EvalConfig& config, EvalReport* report,
                           const std::function<void(int64_t, int64_t)>& on_batch = {});

// One image (784 pixels in [0, 1]) and one question -> the decoded answer.
absl::StatusOr<std::string> AnswerOne(const EvalInputs& inputs, const at::Tensor& pixels,
                                      int64_t question, const EvalConfig& config);

}  // namespace llava
