// The prompt's settings: its style (the experiment's format or the Llama 3.1 chat
// template), question phrasings, answer templates and image slots, with their validation.
// Plain data without libtorch or a tokenizer, so that the coordinator checks a job with
// the rules the workers build prompts by. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

enum class PromptStyle {
  // <|begin_of_text|><|start_header_id|>system<|end_header_id|><|eot_id|>
  // <|start_header_id|>user<|end_header_id|>[image]{question}
  // <|start_header_id|>assistant<|end_header_id|>  answer: {answer}<|eot_id|>
  kExperiment,
  // The Llama 3.1 chat template as its chat_template renders it (system turn with the
  // knowledge-cutoff lines, "\n\n" after each header, the user turn closed by
  // <|eot_id|>), image first in the user message.
  kLlama31Chat,
};

struct PromptConfig {
  PromptStyle style = PromptStyle::kExperiment;
  std::vector<std::string> questions = {"What digit is this?"};
  // "{label}" is replaced by the digit, e.g. "The digit is {label}.".
  std::vector<std::string> answer_templates = {"The digit is {label}."};
  int64_t image_tokens = 1;  // embeddings the projector emits per image
  int64_t num_labels = 10;

  absl::Status Validate() const;
};

absl::StatusOr<PromptStyle> ParsePromptStyle(const std::string& name);  // experiment | chat

}  // namespace llava
