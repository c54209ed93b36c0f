#include "common/augment_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace llava {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64, as the data plan's
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1) from the top 53 bits of one draw of stream `salt`.
double Symmetric(uint64_t key, uint64_t salt) {
  const uint64_t bits = Mix(key ^ Mix(salt)) >> 11;
  return static_cast<double>(bits) * (2.0 / 9007199254740992.0) - 1.0;
}

absl::Status CheckBound(const char* field, double value, double max) {
  if (std::isfinite(value) && value >= 0 && value <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("augment ", field, " must be in [0, ", max, "], got ", value));
}

}  // namespace

absl::Status AugmentConfig::Validate() const {
  if (auto s = CheckBound("shift (pixels)", shift_px, 14); !s.ok()) return s;
  if (auto s = CheckBound("rotate (degrees)", rotate_deg, 180); !s.ok()) return s;
  return CheckBound("scale", scale, 0.5);
}

std::string AugmentConfig::ToString() const {
  if (!enabled()) return "none";
  return absl::StrFormat("shift %g px, rotate %g deg, scale %g", shift_px, rotate_deg, scale);
}

AugmentParams DrawAugmentParams(const AugmentConfig& config, uint64_t key) {
  AugmentParams p;
  p.dx = config.shift_px * Symmetric(key, 1);
  p.dy = config.shift_px * Symmetric(key, 2);
  p.angle_deg = config.rotate_deg * Symmetric(key, 3);
  p.scale = 1.0 + config.scale * Symmetric(key, 4);
  return p;
}

}  // namespace llava
