// What `train`, `eval` and `ask` share: the prompt flags, and loading the model, the
// tokenizer and MNIST splits with errors that name the flag and the file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "common/llama_weights.h"
#include "common/mnist_idx.h"
#include "common/prompt.h"
#include "common/tokenizer.h"

ABSL_DECLARE_FLAG(std::string, questions);
ABSL_DECLARE_FLAG(std::string, answer_templates);
ABSL_DECLARE_FLAG(std::string, prompt_style);
ABSL_DECLARE_FLAG(int64_t, image_tokens);

namespace llava {

// Splits a '|'-separated flag value ("What digit is this?|What is this number?").
std::vector<std::string> SplitPhrasings(const std::string& value);

// The prompt from --questions, --answer_templates, --prompt_style, --image_tokens.
absl::StatusOr<PromptConfig> PromptConfigFromFlags();

struct VlmRuntime {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

// --model (+ --device, --dtype) and --tokenizer; a checkpoint directory's own
// tokenizer.json wins over --tokenizer when present.
absl::StatusOr<VlmRuntime> LoadRuntimeFromFlags();

// `split` of --data_dir ("train" or "test"), or explicit IDX paths when given.
absl::StatusOr<MnistSet> LoadMnistFromFlags(const std::string& split, const std::string& images,
                                            const std::string& labels, int64_t limit);

}  // namespace llava
