// What `train`, `eval` and `ask` share: the prompt from its flags (launch/job_flags.h), and
// loading the model, the tokenizer and MNIST splits with errors that name the flag and the file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/forward_options.h"
#include "common/llama_weights.h"
#include "common/mnist_idx.h"
#include "common/prompt.h"
#include "common/tokenizer.h"
#include "launch/job_flags.h"

namespace llava {

// The prompt from --questions, --answer_templates, --prompt_style, --image_tokens.
absl::StatusOr<PromptConfig> PromptConfigFromFlags();

struct VlmRuntime {
  std::unique_ptr<const LlamaModel> model;
  ForwardOptions forward;  // how the model computes (ForwardOptionsFromFlags)
  std::unique_ptr<Tokenizer> tokenizer;
};

// --model (+ --device, --dtype), the forward options (--float32_attention) and
// --tokenizer; a checkpoint directory's own tokenizer.json wins over --tokenizer when
// present.
absl::StatusOr<VlmRuntime> LoadRuntimeFromFlags();

// `split` of --data_dir ("train" or "test"), or explicit IDX paths when given.
absl::StatusOr<MnistSet> LoadMnistFromFlags(const std::string& split, const std::string& images,
                                            const std::string& labels, int64_t limit);

}  // namespace llava
