#include "common/projector.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "common/log.h"
#include "common/status_macros.h"

namespace llava {
namespace {

// One nn.Linear's (or nn.Conv2d's: `shape` [out, in, kh, kw], fan_in = in*kh*kw)
// parameters as a submodule, so that names read "fc1.weight" as in PyTorch. Not
// torch::nn::Linear: its constructor draws from the global generator.
std::shared_ptr<torch::nn::Module> MakeLayer(std::vector<int64_t> shape, at::Generator& gen,
                                             at::Tensor* weight, at::Tensor* bias) {
  const int64_t out = shape[0];
  int64_t in = 1;
  for (size_t i = 1; i < shape.size(); ++i) in *= shape[i];
  auto module = std::make_shared<torch::nn::Module>();
  auto options = at::TensorOptions().dtype(at::kFloat);
  // torch::nn::init::kaiming_uniform_(weight, a=sqrt(5)) computed the way torch does
  // (same doubles), so that the bounds and therefore the draws are bit-identical.
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1 + std::pow(a, 2)));
  const double weight_bound = std::sqrt(3.0) * (gain / std::sqrt(static_cast<double>(in)));
  const double bias_bound = 1 / std::sqrt(static_cast<double>(in));
  at::Tensor w = at::empty(shape, options);  // [out, in] or [out, in, kh, kw]
  at::Tensor b = at::empty({out}, options);  // [out]
  {
    at::NoGradGuard no_grad;
    w.uniform_(-weight_bound, weight_bound, gen);
    b.uniform_(-bias_bound, bias_bound, gen);
  }
  *weight = module->register_parameter("weight", w);
  *bias = module->register_parameter("bias", b);
  return module;
}

}  // namespace

ProjectorImpl::ProjectorImpl(const ProjectorConfig& config, uint64_t seed) : config_(config) {
  absl::Status valid = config.Validate();
  LM_CHECK(valid.ok()) << valid;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  // Weights at even positions, each followed by its bias, in registration order.
  const auto shapes = ProjectorParameterShapes(config);
  const bool conv = config.type == ProjectorType::kConvMlp;
  size_t i = 0;
  if (conv) {
    register_module("conv1", MakeLayer(shapes[0].second, gen, &conv1_weight_, &conv1_bias_));
    register_module("conv2", MakeLayer(shapes[2].second, gen, &conv2_weight_, &conv2_bias_));
    i = 4;
  }
  register_module("fc1", MakeLayer(shapes[i].second, gen, &fc1_weight_, &fc1_bias_));
  if (config.type != ProjectorType::kLinear) {
    register_module("fc2", MakeLayer(shapes[i + 2].second, gen, &fc2_weight_, &fc2_bias_));
  }
}

at::Tensor ProjectorImpl::forward(const at::Tensor& pixels) {
  LM_CHECK(pixels.dim() == 2 && pixels.size(1) == config_.input_dim)
      << "projector input must be [B, " << config_.input_dim << "], got " << pixels.sizes();
  // [B, in], normalized in the parameters' dtype.
  at::Tensor x = (pixels.to(fc1_weight_.scalar_type()) - config_.input_mean) / config_.input_std;
  if (config_.type == ProjectorType::kConvMlp) {
    const int64_t side = config_.ImageSide();
    at::Tensor h = x.view({pixels.size(0), 1, side, side});  // [B, 1, S, S]
    h = at::max_pool2d(at::gelu(at::conv2d(h, conv1_weight_, conv1_bias_, 1, 1)),
                       2);  // [B, 32, S/2, S/2]
    h = at::max_pool2d(at::gelu(at::conv2d(h, conv2_weight_, conv2_bias_, 1, 1)),
                       2);  // [B, 64, S/4, S/4]
    x = h.flatten(1);       // [B, 64*(S/4)^2]
  }
  at::Tensor y = at::linear(x, fc1_weight_, fc1_bias_);  // [B, k*D] or [B, H]
  if (config_.type != ProjectorType::kLinear) {
    y = at::linear(at::gelu(y), fc2_weight_, fc2_bias_);  // [B, k*D]
  }
  return y.view({pixels.size(0), config_.image_tokens, config_.output_dim});  // [B, k, D]
}

std::vector<std::pair<std::string, at::Tensor>> ProjectorImpl::NamedParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(/*recurse=*/true)) {
    out.emplace_back(item.key(), item.value());
  }
  return out;
}

absl::StatusOr<Projector> MakeProjector(const ProjectorConfig& config, uint64_t seed) {
  LM_RETURN_IF_ERROR(config.Validate());
  return Projector(config, seed);
}

}  // namespace llava
