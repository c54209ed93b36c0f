// The vision projector's configuration: its type, dimensions and input normalization,
// their validation and JSON form, and the parameter shapes a projector of a config has.
// Plain data without libtorch, so that the coordinator checks jobs and checkpoints with
// the rules the workers train by. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

enum class ProjectorType {
  kLinear,     // Linear input_dim -> k*D (the experiment's)
  kMlp2xGelu,  // Linear input_dim -> H, GELU (exact erf), Linear H -> k*D (LLaVA-1.5)
  // A small trainable image encoder before mlp2x_gelu: the input as a square image, Conv
  // 3x3 (1 -> 32, padding 1), GELU, 2x2 max pool, Conv 3x3 (32 -> 64), GELU, 2x2 max
  // pool, flattened (channel-major), then Linear -> H, GELU, Linear H -> k*D. A raw-pixel
  // MLP must learn every position of a stroke separately; the convolutions share what a
  // stroke looks like across positions, and the pooling tolerates small shifts.
  kConvMlp,
};

// The conv_mlp encoder's channels (fixed: part of the kind, like mlp2x_gelu's two layers).
inline constexpr int64_t kConvChannels1 = 32;
inline constexpr int64_t kConvChannels2 = 64;

// linear | mlp2x_gelu | conv_mlp
absl::StatusOr<ProjectorType> ParseProjectorType(const std::string& name);
const char* ProjectorTypeName(ProjectorType type);

struct ProjectorConfig {
  ProjectorType type = ProjectorType::kLinear;
  int64_t input_dim = 784;   // 28*28 pixels; conv_mlp: a square image, side divisible by 4
  int64_t output_dim = 0;    // the LLM's hidden size D
  int64_t hidden_dim = 0;    // mlp2x_gelu and conv_mlp; 0 means output_dim
  int64_t image_tokens = 1;  // k embeddings per image
  // Applied to pixels in [0,1] before the first layer, as torchvision's Normalize with
  // MNIST's statistics in the experiment.
  double input_mean = 0.1307;
  double input_std = 0.3081;

  absl::Status Validate() const;
  // hidden_dim with the 0 default resolved (0 for kLinear, which has no hidden layer).
  int64_t EffectiveHiddenDim() const;
  // conv_mlp: the side of the square input image (sqrt(input_dim)); 0 for the others.
  int64_t ImageSide() const;
  std::string ToJson() const;
  // Every field but `type` and `output_dim` may be absent (defaults); unknown fields are
  // refused so that a typo is not silently ignored. `source` names the text in errors.
  static absl::StatusOr<ProjectorConfig> FromJson(const std::string& json_text,
                                                  const std::string& source);
};

bool operator==(const ProjectorConfig& a, const ProjectorConfig& b);
inline bool operator!=(const ProjectorConfig& a, const ProjectorConfig& b) { return !(a == b); }

// The parameters a projector of `config` has, in its fixed order, with their shapes
// ("fc1.weight" [H or k*D, input_dim], "fc1.bias", then for mlp2x_gelu "fc2.weight",
// "fc2.bias"; conv_mlp: "conv1.weight" [32, 1, 3, 3], "conv1.bias", "conv2.weight"
// [64, 32, 3, 3], "conv2.bias", then fc1 [H, 64 * (side/4)^2] and fc2 as mlp2x_gelu's).
// Lets checkpoints be checked without building a module.
std::vector<std::pair<std::string, std::vector<int64_t>>> ProjectorParameterShapes(
    const ProjectorConfig& config);

// OK when weights of a projector of `from` can initialize one of `to`: the same kind,
// parameter shapes and input normalization (hidden_dim 0 and the width it stands for are
// the same). Otherwise INVALID_ARGUMENT naming `source` and both configs.
absl::Status CheckProjectorCompatible(const ProjectorConfig& from, const ProjectorConfig& to,
                                      const std::string& source);

}  // namespace llava
