#include "common/optimizer.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace llava {
namespace {

constexpr const char* kStepName = "step";

std::string ShapeString(at::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ", "), "]");
}

// The state tensor names of one parameter, in StateTensors order.
std::vector<std::string> StateNames(const OptimizerConfig& config) {
  if (config.type == "adamw") return {"exp_avg", "exp_avg_sq"};
  if (config.momentum != 0) return {"momentum_buffer"};
  return {};
}

}  // namespace

absl::StatusOr<std::unique_ptr<Optimizer>> Optimizer::Create(
    const OptimizerConfig& config, std::vector<std::pair<std::string, at::Tensor>> named_params) {
  LM_RETURN_IF_ERROR(config.Validate());
  if (named_params.empty()) return absl::InvalidArgumentError("optimizer: no parameters");
  std::set<std::string> seen;
  std::vector<Slot> slots;
  for (auto& [name, param] : named_params) {
    // A plain reference: clang before 16 cannot capture a structured binding.
    const std::string& param_name = name;
    auto bad = [&param_name](const std::string& what) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer parameter '", param_name, "': ", what));
    };
    if (name.empty() || name == kStepName) return bad("reserved or empty name");
    if (!seen.insert(name).second) return bad("duplicate name");
    if (!param.defined()) return bad("undefined tensor");
    if (!param.is_floating_point()) return bad("not a floating-point tensor");
    if (!param.is_leaf() || !param.requires_grad()) return bad("not a leaf requiring grad");
    Slot slot{name, param, {}};
    for (const std::string& s : StateNames(config)) {
      slot.state.push_back({s, at::zeros_like(param, at::MemoryFormat::Preserve)});
    }
    slots.push_back(std::move(slot));
  }
  return std::unique_ptr<Optimizer>(new Optimizer(config, std::move(slots)));
}

void Optimizer::Step(double lr) {
  at::NoGradGuard no_grad;
  for (Slot& slot : slots_) {
    if (!slot.param.grad().defined()) continue;
    if (config_.type == "adamw") {
      AdamWStep(slot, lr);
    } else {
      SgdStep(slot, lr);
    }
  }
  ++step_;
}

// torch::optim::AdamW::step, op for op (the same ATen calls in the same order, so the
// same rounding on every device).
void Optimizer::AdamWStep(Slot& slot, double lr) {
  at::Tensor& p = slot.param;
  const at::Tensor& grad = p.grad();
  at::Tensor& exp_avg = slot.state[0].tensor;
  at::Tensor& exp_avg_sq = slot.state[1].tensor;
  const double beta1 = config_.beta1, beta2 = config_.beta2;
  if (config_.weight_decay != 0) p.mul_(1 - lr * config_.weight_decay);
  const int64_t step = step_ + 1;
  const double bias_correction1 = 1 - std::pow(beta1, step);
  const double bias_correction2 = 1 - std::pow(beta2, step);
  exp_avg.mul_(beta1).add_(grad, 1 - beta1);
  exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
  at::Tensor denom = (exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(config_.eps);
  const double step_size = lr / bias_correction1;
  p.addcdiv_(exp_avg, denom, -step_size);
}

// torch::optim::SGD::step (dampening 0, no Nesterov), op for op.
void Optimizer::SgdStep(Slot& slot, double lr) {
  at::Tensor& p = slot.param;
  at::Tensor d_p = p.grad();
  if (config_.weight_decay != 0) d_p = d_p.add(p, config_.weight_decay);
  if (config_.momentum != 0) {
    at::Tensor& buf = slot.state[0].tensor;
    if (step_ == 0) {
      buf.copy_(d_p);  // torch starts the buffer as a copy of the first gradient
    } else {
      buf.mul_(config_.momentum).add_(d_p, 1);
    }
    d_p = buf;
  }
  p.add_(d_p, -1 * lr);
}

void Optimizer::ZeroGrad() {
  for (Slot& slot : slots_) {
    at::Tensor grad = slot.param.mutable_grad();
    if (grad.defined()) grad.zero_();
  }
}

std::vector<NamedTensor> Optimizer::StateTensors() const {
  std::vector<NamedTensor> out;
  for (const Slot& slot : slots_) {
    for (const NamedTensor& s : slot.state) {
      out.push_back({absl::StrCat(slot.name, ".", s.name), s.tensor.detach()});
    }
  }
  out.push_back({kStepName, at::scalar_tensor(step_, at::TensorOptions().dtype(at::kLong))});
  return out;
}

absl::Status Optimizer::LoadState(const std::map<std::string, at::Tensor>& state) {
  auto bad = [](const std::string& name, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("optimizer state tensor '", name, "': ", what));
  };
  // Check everything first: a half-loaded state would silently corrupt training.
  std::set<std::string> expected;
  for (const NamedTensor& mine : StateTensors()) {
    expected.insert(mine.name);
    auto it = state.find(mine.name);
    if (it == state.end()) {
      return absl::NotFoundError(absl::StrCat(
          "optimizer state tensor '", mine.name, "' is missing (", config_.type,
          config_.type == "sgd" ? absl::StrCat(" with momentum ", config_.momentum) : "",
          " expects it)"));
    }
    const at::Tensor& t = it->second;
    if (!t.defined()) return bad(mine.name, "undefined tensor");
    if (t.sizes() != mine.tensor.sizes()) {
      return bad(mine.name, absl::StrCat("shape ", ShapeString(t.sizes()), ", expected ",
                                         ShapeString(mine.tensor.sizes())));
    }
    if (t.scalar_type() != mine.tensor.scalar_type()) {
      return bad(mine.name, absl::StrCat("dtype ", c10::toString(t.scalar_type()), ", expected ",
                                         c10::toString(mine.tensor.scalar_type())));
    }
  }
  for (const auto& [name, t] : state) {
    if (expected.count(name) == 0) {
      return bad(name,
                 absl::StrCat("unexpected for optimizer ", config_.type, " over these parameters"));
    }
  }
  const int64_t step = state.at(kStepName).item<int64_t>();
  if (step < 0) return bad(kStepName, absl::StrCat("negative step ", step));
  try {
    at::NoGradGuard no_grad;
    for (Slot& slot : slots_) {
      for (NamedTensor& s : slot.state) {
        s.tensor.copy_(state.at(absl::StrCat(slot.name, ".", s.name)));
      }
    }
  } catch (const c10::Error& e) {
    // Only a device failure gets here (shapes and dtypes were checked).
    return absl::InternalError(
        absl::StrCat("loading optimizer state: ", e.what_without_backtrace()));
  }
  step_ = step;
  return absl::OkStatus();
}

}  // namespace llava
