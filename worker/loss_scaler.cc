#include "worker/loss_scaler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace llava {

absl::Status LossScaleConfig::Validate() const {
  if (!(initial_scale > 0) || !std::isfinite(initial_scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss scale: initial_scale must be finite and > 0, got ", initial_scale));
  }
  if (!(growth_factor > 1) || !std::isfinite(growth_factor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss scale: growth_factor must be > 1, got ", growth_factor));
  }
  if (!(backoff_factor > 0 && backoff_factor < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss scale: backoff_factor must be in (0, 1), got ", backoff_factor));
  }
  if (growth_interval <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss scale: growth_interval must be > 0, got ", growth_interval));
  }
  if (!(min_scale > 0) || min_scale > initial_scale) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss scale: min_scale must be > 0 and <= initial_scale, got ", min_scale));
  }
  return absl::OkStatus();
}

LossScaler::LossScaler(const LossScaleConfig& config)
    : config_(config), scale_(config.initial_scale) {}

absl::Status LossScaler::Update(bool grads_finite) {
  if (!config_.enabled) return absl::OkStatus();
  if (grads_finite) {
    if (++good_steps_ >= config_.growth_interval) {
      // Stays finite: a float16 gradient is never useful beyond float32's range anyway.
      scale_ = std::min(scale_ * config_.growth_factor, 1e30);
      good_steps_ = 0;
    }
    return absl::OkStatus();
  }
  ++skipped_;
  good_steps_ = 0;
  const double next = scale_ * config_.backoff_factor;
  if (next < config_.min_scale) {
    return absl::FailedPreconditionError(
        absl::StrCat("the float16 gradients overflow even at loss scale ", scale_, " (", skipped_,
                     " steps skipped): train this model in bfloat16 (--dtype bfloat16)"));
  }
  scale_ = next;
  return absl::OkStatus();
}

nlohmann::json LossScaler::ToJson() const {
  return {{"scale", scale_}, {"good_steps", good_steps_}};
}

absl::Status LossScaler::Restore(const nlohmann::json& state, const std::string& source) {
  auto scale = state.find("scale");
  auto good = state.find("good_steps");
  if (!state.is_object() || scale == state.end() || !scale->is_number() ||
      !(scale->get<double>() > 0) || good == state.end() || !good->is_number_integer() ||
      good->get<int64_t>() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source,
                     ": train_state.loss_scale must be {\"scale\": > 0, "
                     "\"good_steps\": >= 0}, got ",
                     state.dump()));
  }
  scale_ = scale->get<double>();
  good_steps_ = good->get<int64_t>();
  return absl::OkStatus();
}

}  // namespace llava
