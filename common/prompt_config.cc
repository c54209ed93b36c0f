#include "common/prompt_config.h"

#include "absl/strings/str_cat.h"

namespace llava {

absl::Status PromptConfig::Validate() const {
  if (questions.empty()) return absl::InvalidArgumentError("prompt: no questions given");
  for (const std::string& q : questions) {
    if (q.empty()) return absl::InvalidArgumentError("prompt: a question is empty");
  }
  if (answer_templates.empty()) {
    return absl::InvalidArgumentError("prompt: no answer templates given");
  }
  for (const std::string& a : answer_templates) {
    if (a.find("{label}") == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt: answer template '", a, "' has no {label}"));
    }
  }
  if (image_tokens < 1 || image_tokens > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt: image_tokens must be in 1..64, got ", image_tokens));
  }
  if (num_labels < 1) return absl::InvalidArgumentError("prompt: num_labels must be >= 1");
  return absl::OkStatus();
}

absl::StatusOr<PromptStyle> ParsePromptStyle(const std::string& name) {
  if (name == "experiment") return PromptStyle::kExperiment;
  if (name == "chat" || name == "llama3.1-chat") return PromptStyle::kLlama31Chat;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown prompt style '", name, "' (experiment or chat)"));
}

}  // namespace llava
