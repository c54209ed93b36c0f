// The optimizers (AdamW, SGD with momentum) on plain tensors and their state as named
// tensors (for exact checkpoint save/restore and gradient all-reduce before Step); their
// settings and the learning-rate schedules are in common/optimizer_config.h. Threading: an
// Optimizer belongs to one thread.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/optimizer_config.h"
#include "common/safetensors.h"

namespace llava {

class Optimizer {
 public:
  // `named_params` are leaf tensors that require grad (on any one device and floating
  // dtype); the state is allocated at once, zeros, with the parameters' dtype and device.
  static absl::StatusOr<std::unique_ptr<Optimizer>> Create(
      const OptimizerConfig& config, std::vector<std::pair<std::string, at::Tensor>> named_params);

  // One update with learning rate `lr` from each parameter's .grad(); a parameter with
  // no gradient is skipped (its state is untouched), as torch does. AdamW computes
  // exactly torch::optim::AdamW's sequence of ATen ops (torch's C++ AdamW and
  // torch.optim.AdamW(foreach=False) of torch 1.x; torch 2.x Python uses lerp_ for
  // exp_avg, which can differ in the last bit); SGD exactly torch::optim::SGD's.
  void Step(double lr);
  void ZeroGrad();  // sets gradients to zero in place (keeps buffers for all-reduce)
  int64_t step() const { return step_; }
  const OptimizerConfig& config() const { return config_; }

  // "<param>.exp_avg", "<param>.exp_avg_sq" (adamw) or "<param>.momentum_buffer" (sgd
  // with momentum > 0), then "step" (0-d int64). The tensors alias the live state (no
  // copy): serialize or clone them before the next Step.
  std::vector<NamedTensor> StateTensors() const;
  // Replaces the state with `state`, which must hold exactly the names StateTensors
  // gives with equal shapes and dtypes; nothing is changed unless all of it checks out.
  absl::Status LoadState(const std::map<std::string, at::Tensor>& state);

 private:
  struct Slot {
    std::string name;
    at::Tensor param;
    std::vector<NamedTensor> state;  // in StateTensors order, names without the prefix
  };
  Optimizer(OptimizerConfig config, std::vector<Slot> slots)
      : config_(std::move(config)), slots_(std::move(slots)) {}
  void AdamWStep(Slot& slot, double lr);
  void SgdStep(Slot& slot, double lr);

  OptimizerConfig config_;
  std::vector<Slot> slots_;
  int64_t step_ = 0;
};

}  // namespace llava
