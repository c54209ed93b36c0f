#include "common/optimizer_config.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace llava {
namespace {

absl::Status OptionError(const std::string& field, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("optimizer ", field, " ", problem));
}

}  // namespace

absl::Status OptimizerConfig::Validate() const {
  if (type != "adamw" && type != "sgd") {
    return OptionError("type", absl::StrCat("'", type, "' is unknown (known: adamw, sgd)"));
  }
  if (!std::isfinite(lr) || lr < 0) return OptionError("lr", "must be finite and >= 0");
  if (!std::isfinite(weight_decay) || weight_decay < 0) {
    return OptionError("weight_decay", "must be finite and >= 0");
  }
  if (!(beta1 >= 0 && beta1 < 1)) return OptionError("beta1", "must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) return OptionError("beta2", "must be in [0, 1)");
  if (!std::isfinite(eps) || eps < 0) return OptionError("eps", "must be finite and >= 0");
  if (!(momentum >= 0 && momentum < 1)) return OptionError("momentum", "must be in [0, 1)");
  return absl::OkStatus();
}

absl::Status ScheduleConfig::Validate() const {
  if (type != "constant" && type != "cosine") {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule type '", type, "' is unknown (known: constant, cosine)"));
  }
  if (warmup_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule warmup_steps must be >= 0, got ", warmup_steps));
  }
  if (!(warmup_ratio >= 0 && warmup_ratio <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule warmup_ratio must be in [0, 1], got ", warmup_ratio));
  }
  return absl::OkStatus();
}

int64_t ScheduleConfig::WarmupSteps(int64_t total_steps) const {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
}

double LearningRate(const OptimizerConfig& optimizer, const ScheduleConfig& schedule, int64_t step,
                    int64_t total_steps) {
  const double lr = optimizer.lr;
  const int64_t warmup = schedule.WarmupSteps(total_steps);
  if (step < warmup) {
    return lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  }
  if (schedule.type != "cosine") return lr;
  double progress = static_cast<double>(step - warmup) /
                    static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  // HF lets the cosine rise again past the end; training never goes there, and a
  // schedule that ends at 0 should stay there.
  progress = std::min(progress, 1.0);
  return lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace llava
