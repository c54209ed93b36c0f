// The offline demo LM: a Llama-3.1-architecture model with the real tokenizer, trained on
// text-only dialogues (the digit's token at the image slot), saved as an HF checkpoint.
// BuildDemoLm sets libtorch's thread count: run it alone, not beside other libtorch work.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

struct DemoLmOptions {
  std::string tokenizer_path = "data/tokenizer/tokenizer.json";
  std::string out_dir = "data/models/demo-lm";
  int64_t hidden_size = 128;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;
  // Llama 3.1 8B's ratio (14336 / 4096 = 3.5).
  int64_t intermediate_size = 448;
  int64_t steps = 500;
  int64_t batch_size = 32;
  double lr = 2e-3;
  uint64_t seed = 0;
  int64_t log_every = 50;
  // Gaussian noise added to the image-slot embedding, as a fraction of that embedding's
  // RMS: teaches the LM to read a neighbourhood of each digit token, the region a
  // projector's outputs land in, rather than the exact row only.
  double image_noise = 0.5;
  // Fraction of each batch whose whole answer is in the loss; the other rows contribute
  // their digit token only (the template is identical in every row; the digit is what
  // needs the whole batch). 1 = the plain answer loss. Every row of the 128,256-way
  // lm_head costs as much as the rest of the model, so this sets the build time.
  double template_fraction = 0.25;
  // Training stops early once the mean answer loss of the last `stop_window` steps falls
  // below this (0 disables early stopping).
  double stop_loss = 0.01;
  int64_t stop_window = 25;
  // libtorch intra-op threads; 0 = all hardware threads. Results are bitwise
  // reproducible for a seed only at the same thread count on the same machine.
  int num_threads = 0;
  // Measure the answer loss before and after training and the greedy answers on the
  // held-out phrasings (DemoLmResult's losses and accuracy are -1 without).
  bool evaluate = true;

  absl::Status Validate() const;
};

// The question phrasings the demo LM is trained on.
const std::vector<std::string>& DemoLmQuestions();
// Phrasings never used in training, for measuring generalization to unseen wording.
const std::vector<std::string>& HeldOutQuestions();

struct DemoLmResult {
  double initial_answer_loss = -1;  // as final_answer_loss, of the untrained model
  // The plain answer loss (every answer token, full vocabulary, no noise) of the final
  // model on a fixed set of 64 fresh dialogues with the training questions.
  double final_answer_loss = -1;
  double running_train_loss = 0;  // the training loss averaged over the last stop_window steps
  double seconds = 0;             // training and writing, tokenizer load included
  int64_t steps = 0;              // steps run (fewer than options.steps if stopped early)
  // Greedy answers on text-only dialogues with the held-out questions, every digit:
  // fraction whose answer is exactly "The digit is {label}." then <|eot_id|>
  // (-1 when options.evaluate is false).
  double digit_accuracy = -1;
};

// Trains the demo LM and writes out_dir (config.json, generation_config.json,
// model.safetensors, tokenizer.json, demo_lm.json) into out_dir.tmp, then renames that
// directory over out_dir, so a reader never sees a half-written model.
absl::StatusOr<DemoLmResult> BuildDemoLm(const DemoLmOptions& options);

// True when out_dir holds a complete demo LM (every file BuildDemoLm writes).
bool DemoLmExists(const std::string& out_dir);

}  // namespace llava
