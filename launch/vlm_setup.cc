#include "launch/vlm_setup.h"

#include "absl/flags/flag.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "launch/flags_common.h"

namespace llava {

absl::StatusOr<PromptConfig> PromptConfigFromFlags() {
  PromptConfig config;
  LM_ASSIGN_OR_RETURN(config.style, ParsePromptStyle(absl::GetFlag(FLAGS_prompt_style)));
  config.questions = SplitPhrasings(absl::GetFlag(FLAGS_questions));
  config.answer_templates = SplitPhrasings(absl::GetFlag(FLAGS_answer_templates));
  config.image_tokens = absl::GetFlag(FLAGS_image_tokens);
  LM_RETURN_IF_ERROR(config.Validate());
  return config;
}

absl::StatusOr<VlmRuntime> LoadRuntimeFromFlags() {
  VlmRuntime rt;
  LM_ASSIGN_OR_RETURN(ModelOptions options, ModelOptionsFromFlags());
  LM_ASSIGN_OR_RETURN(rt.forward, ForwardOptionsFromFlags());
  const std::string spec = absl::GetFlag(FLAGS_model);
  std::string tok_path = absl::GetFlag(FLAGS_tokenizer);
  if (IsDirectory(spec) && FileExists(spec + "/tokenizer.json"))
    tok_path = spec + "/tokenizer.json";
  LM_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Load(tok_path));
  rt.tokenizer = std::make_unique<Tokenizer>(std::move(tok));
  LM_ASSIGN_OR_RETURN(rt.model, LoadLlama(spec, options));
  if (rt.tokenizer->vocab_size() > rt.model->config.vocab_size) {
    return absl::InvalidArgumentError("tokenizer " + tok_path + " has " +
                                      std::to_string(rt.tokenizer->vocab_size()) +
                                      " tokens, more than the model's vocabulary of " +
                                      std::to_string(rt.model->config.vocab_size));
  }
  return rt;
}

absl::StatusOr<MnistSet> LoadMnistFromFlags(const std::string& split, const std::string& images,
                                            const std::string& labels, int64_t limit) {
  if (!images.empty() || !labels.empty()) {
    if (images.empty() || labels.empty()) {
      return absl::InvalidArgumentError("give both --images and --labels (IDX files)");
    }
    return LoadMnist(images, labels, limit);
  }
  return LoadMnistSplit(absl::GetFlag(FLAGS_data_dir), split, limit);
}

}  // namespace llava
