// The vision projector: the project's only trainable torch::nn::Module, mapping a 28x28
// MNIST digit to `image_tokens` embeddings in the frozen LLM's input space. Threading: a
// Projector is owned by one training thread; forward() under NoGradGuard on a module
// nobody is stepping may run from several threads.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/projector_config.h"

namespace llava {

class ProjectorImpl : public torch::nn::Module {
 public:
  // Float32 parameters on the CPU with torch's default Linear and Conv2d initialization
  // (kaiming_uniform(a=sqrt(5)) weights, U(+-1/sqrt(fan_in)) biases), drawn from a local
  // CPU generator seeded with `seed` in parameter order: the values equal those of
  // torch.manual_seed(seed) followed by constructing the nn.Conv2d and nn.Linear layers in
  // order, and the global torch RNG is left untouched. The config must be valid (LM_CHECK); use
  // MakeProjector to validate user input.
  ProjectorImpl(const ProjectorConfig& config, uint64_t seed);

  // pixels [B, input_dim] in [0,1] (any floating dtype, any device the module is on)
  // -> [B, k, D] in the parameters' dtype (float32 unless the module was converted).
  at::Tensor forward(const at::Tensor& pixels);

  const ProjectorConfig& config() const { return config_; }
  // Parameters in the fixed order of ProjectorParameterShapes, aliasing the module's.
  std::vector<std::pair<std::string, at::Tensor>> NamedParameters() const;

 private:
  ProjectorConfig config_;
  // conv1/conv2 only for conv_mlp; fc2 for mlp2x_gelu and conv_mlp.
  at::Tensor conv1_weight_, conv1_bias_, conv2_weight_, conv2_bias_;
  at::Tensor fc1_weight_, fc1_bias_, fc2_weight_, fc2_bias_;
};

TORCH_MODULE(Projector);

// Validates `config` and builds the projector.
absl::StatusOr<Projector> MakeProjector(const ProjectorConfig& config, uint64_t seed);

}  // namespace llava
