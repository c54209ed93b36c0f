// Dynamic loss scaling for the backward pass through a float16 model: the loss is
// multiplied by scale() so that small gradients stay above float16's underflow, a step
// whose gradients overflowed is skipped and the scale backed off, and after
// growth_interval clean steps the scale grows again. One owner thread (the trainer's).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace llava {

struct LossScaleConfig {
  bool enabled = false;
  // The scale multiplies the sum of the answer tokens' losses (not their mean), so a
  // sample's activation gradients do not depend on the batch size. 2^12: the gradient of
  // a token's loss by its logits is at most 1 in size, 4,096 is far from float16's 65,504,
  // and the smallest softmax terms of a 128k vocabulary (~1e-5) land near 0.04.
  double initial_scale = 4096.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 1000;  // clean steps in a row before the scale grows
  // Backing off below this means the gradients overflow at any useful scale: the run
  // fails instead of skipping every step.
  double min_scale = 1.0 / 1024;

  absl::Status Validate() const;
};

class LossScaler {
 public:
  explicit LossScaler(const LossScaleConfig& config = {});

  bool enabled() const { return config_.enabled; }
  // What the loss is multiplied by before backward; 1 when disabled.
  double scale() const { return config_.enabled ? scale_ : 1.0; }
  int64_t skipped_steps() const { return skipped_; }

  // Records a step's outcome: finite gradients count towards growth; an overflow backs
  // the scale off (the caller skips the optimizer step). Fails once the scale would fall
  // under min_scale.
  absl::Status Update(bool grads_finite);

  // The state that a resumed run needs to continue bit for bit.
  nlohmann::json ToJson() const;
  absl::Status Restore(const nlohmann::json& state, const std::string& source);

 private:
  LossScaleConfig config_;
  double scale_;
  int64_t good_steps_ = 0;  // clean steps since the last change of scale
  int64_t skipped_ = 0;     // steps skipped for overflow, in this process
};

}  // namespace llava
