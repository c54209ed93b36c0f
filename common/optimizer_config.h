// The optimizer's and the learning-rate schedule's settings with their validation, and
// the schedule itself: plain data without libtorch, so that the coordinator checks a job
// with the rules the workers train by. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace llava {

struct OptimizerConfig {
  std::string type = "adamw";  // "adamw" | "sgd"
  double lr = 1e-3;
  // torch.optim.AdamW's default, which the experiment used. For "sgd" it is torch's
  // coupled L2 term (grad + weight_decay * p), whose torch default would be 0.
  double weight_decay = 0.01;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adamw
  double momentum = 0.0;                          // sgd (dampening 0, no Nesterov)

  absl::Status Validate() const;
};

struct ScheduleConfig {
  // "constant": lr after warmup; "cosine": HF get_cosine_schedule_with_warmup.
  std::string type = "constant";
  int64_t warmup_steps = 0;   // wins over warmup_ratio when > 0
  double warmup_ratio = 0.0;  // warmup = ceil(ratio * total_steps), as HF Trainer

  absl::Status Validate() const;
  int64_t WarmupSteps(int64_t total_steps) const;
};

// The learning rate for 0-based `step` (the step about to be taken) of `total_steps`:
// lr * step / warmup during warmup (so 0 at step 0, as HF's LambdaLR), then lr
// (constant) or lr * 0.5 * (1 + cos(pi * progress)), progress = (step - warmup) /
// max(1, total - warmup), clamped at 0 past the end.
double LearningRate(const OptimizerConfig& optimizer, const ScheduleConfig& schedule, int64_t step,
                    int64_t total_steps);

}  // namespace llava
