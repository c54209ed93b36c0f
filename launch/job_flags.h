// The flags a job is made of, shared by the commands that train or evaluate in one process
// (`train`, `eval`, `ask`, in llava-mnist) and those that submit a job (`submit`, `launch`):
// the projector, optimizer and schedule, batch and epochs, the prompt, the checkpoint and
// eval sizes. No libtorch (llava-ctl's `submit` has them too).
#pragma once

#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "launch/flags_shared.h"

ABSL_DECLARE_FLAG(std::string, projector);
ABSL_DECLARE_FLAG(int64_t, projector_hidden);
ABSL_DECLARE_FLAG(std::string, optimizer);
ABSL_DECLARE_FLAG(double, lr);
ABSL_DECLARE_FLAG(double, weight_decay);
ABSL_DECLARE_FLAG(std::string, schedule);
ABSL_DECLARE_FLAG(double, warmup_ratio);
ABSL_DECLARE_FLAG(int64_t, batch_size);
ABSL_DECLARE_FLAG(int64_t, eval_batch_size);
ABSL_DECLARE_FLAG(int64_t, grad_accum);
ABSL_DECLARE_FLAG(int64_t, epochs);
ABSL_DECLARE_FLAG(int64_t, max_steps);
ABSL_DECLARE_FLAG(int64_t, train_digits);
ABSL_DECLARE_FLAG(int64_t, checkpoint_every);
ABSL_DECLARE_FLAG(std::string, checkpoint);
ABSL_DECLARE_FLAG(int64_t, eval_digits);
ABSL_DECLARE_FLAG(std::string, questions);
ABSL_DECLARE_FLAG(std::string, answer_templates);
ABSL_DECLARE_FLAG(std::string, prompt_style);
ABSL_DECLARE_FLAG(int64_t, image_tokens);
ABSL_DECLARE_FLAG(double, augment_shift);
ABSL_DECLARE_FLAG(double, augment_rotate);
ABSL_DECLARE_FLAG(double, augment_scale);

namespace llava {

// Splits a '|'-separated flag value ("What digit is this?|What is this number?").
std::vector<std::string> SplitPhrasings(const std::string& value);

}  // namespace llava
