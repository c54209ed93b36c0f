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
#include "common/tokenizer.h"

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

// One sample of a batch: which question and answer template, and the label.
struct PromptSample {
  int64_t question = 0;
  int64_t answer_template = 0;
  int64_t label = 0;
};

// A batch of prompts as token ids, right-padded: causal attention never lets a padded
// position influence an earlier one, so padding at the end needs no attention mask.
struct PromptBatch {
  at::Tensor ids;     // [B, T] int64; image slots and padding hold pad_id
  at::Tensor labels;  // [B, T] int64; -100 except the answer tokens (ids there)
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
  std::vector<int64_t> prefix_;                          // before the image
  std::vector<std::vector<int64_t>> question_suffix_;    // per question: after the image
  std::vector<std::vector<std::vector<int64_t>>> answers_;  // [template][label]
  std::vector<int64_t> stop_ids_;
  int64_t pad_id_ = 0;
};

}  // namespace llava
