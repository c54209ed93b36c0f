// Data augmentation of the training digits: its settings with their validation, and the
// per-sample random transform drawn from a 64-bit key (DataPlan::AugmentKey: the seed, the
// epoch and the digit's index), so that a digit is transformed the same way whichever
// rank, batch or forward pass it lands in. Plain data without libtorch (the coordinator
// validates jobs by it); common/augment.h applies the transform to pixels. Pure
// functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace llava {

struct AugmentConfig {
  // Each bound draws uniformly in [-bound, bound] per sample; 0 turns that part off.
  double shift_px = 0;    // translation on each axis, in pixels, 0..14
  double rotate_deg = 0;  // rotation about the image centre, in degrees, 0..180
  double scale = 0;       // relative size change: a factor in [1 - scale, 1 + scale], 0..0.5

  bool enabled() const { return shift_px > 0 || rotate_deg > 0 || scale > 0; }
  // INVALID_ARGUMENT naming the field for a bound that is not finite or out of range.
  absl::Status Validate() const;
  std::string ToString() const;  // "shift 2 px, rotate 10 deg, scale 0.1" or "none"
};

// One sample's transform: its content moves by (dx, dy) pixels (x right, y down), turns
// by angle_deg about the centre (the sign picks the direction) and is scaled by `scale`
// about the centre.
struct AugmentParams {
  double dx = 0, dy = 0, angle_deg = 0, scale = 1;
};

// The transform of the sample with `key` under `config`: a pure function of both, the
// same on every machine (splitmix64 and integer-to-double arithmetic only).
AugmentParams DrawAugmentParams(const AugmentConfig& config, uint64_t key);

}  // namespace llava
