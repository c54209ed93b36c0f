#include "launch/job_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

ABSL_FLAG(std::string, projector, "linear",
          "train: projector type, linear, mlp2x_gelu or conv_mlp (a small conv encoder first)");
ABSL_FLAG(int64_t, projector_hidden, 0, "train: mlp2x_gelu/conv_mlp hidden width (0: the LLM's)");
ABSL_FLAG(std::string, optimizer, "adamw", "train: adamw or sgd");
ABSL_FLAG(double, lr, 1e-3, "train: peak learning rate");
ABSL_FLAG(double, weight_decay, 0.01, "train: decoupled weight decay (AdamW)");
ABSL_FLAG(std::string, schedule, "constant", "train: constant, or cosine (linear warmup + cosine)");
ABSL_FLAG(double, warmup_ratio, 0.03, "train: warmup steps as a fraction of all (cosine)");
ABSL_FLAG(int64_t, batch_size, 1, "train: samples per forward pass");
ABSL_FLAG(int64_t, eval_batch_size, 100, "eval: images per generation batch");
ABSL_FLAG(int64_t, grad_accum, 1, "train: forward passes per optimizer step");
ABSL_FLAG(int64_t, epochs, 1, "train: passes over the training digits");
ABSL_FLAG(int64_t, max_steps, -1, "train: stop after this many optimizer steps (-1: epochs)");
ABSL_FLAG(int64_t, train_digits, 1000, "train: use the first N training digits (-1: all)");
ABSL_FLAG(int64_t, checkpoint_every, 0,
          "train: also checkpoint every N steps (0: at the end only)");
ABSL_FLAG(std::string, checkpoint, "runs/latest/projector.safetensors",
          "eval/ask/export: the projector checkpoint");
ABSL_FLAG(int64_t, eval_digits, 1000, "eval: evaluate the first N test digits (-1: all)");
ABSL_FLAG(std::string, questions, "What digit is this?", "question phrasings, separated by '|'");
ABSL_FLAG(std::string, answer_templates, "The digit is {label}.",
          "answer templates with {label}, separated by '|'");
ABSL_FLAG(std::string, prompt_style, "experiment",
          "experiment (the published experiment's format) or chat (Llama 3.1 chat template)");
ABSL_FLAG(int64_t, image_tokens, 1, "embeddings the projector emits per image");
ABSL_FLAG(double, augment_shift, 0,
          "train: augmentation, shift each training digit by up to this many pixels per axis");
ABSL_FLAG(double, augment_rotate, 0, "train: augmentation, rotate by up to this many degrees");
ABSL_FLAG(double, augment_scale, 0, "train: augmentation, scale by a factor in [1 - s, 1 + s]");

namespace llava {

std::vector<std::string> SplitPhrasings(const std::string& value) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(value, '|', absl::SkipWhitespace())) {
    out.emplace_back(absl::StripAsciiWhitespace(part));
  }
  return out;
}

}  // namespace llava
