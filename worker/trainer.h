// Training of the projector through the frozen Llama on one device: the step's forward
// (projector -> spliced prompt -> answer loss), backward into the projector, the
// optimizer step under the learning-rate schedule, and checkpoints. `llava-mnist train`
// runs it alone; a distributed worker runs ComputeGradients on its rank's share, averages
// the gradients with its group, then ApplyGradients. One owner thread.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/augment_config.h"
#include "common/data_plan.h"
#include "common/forward_options.h"
#include "common/llama_weights.h"
#include "common/mnist_idx.h"
#include "common/optimizer.h"
#include "common/projector.h"
#include "common/prompt.h"
#include "common/train_checkpoint.h"
#include "common/vlm.h"
#include "worker/loss_scaler.h"

namespace llava {

struct TrainConfig {
  std::string model_spec;  // recorded in checkpoints
  ProjectorConfig projector;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  int64_t batch_size = 1;  // samples per forward pass (per rank)
  int64_t grad_accum = 1;  // forward passes per optimizer step (per rank)
  int64_t world_size = 1;  // ranks sharing each optimizer step
  int64_t epochs = 1;
  int64_t max_steps = -1;       // -1: as many as the epochs give
  int64_t train_digits = 1000;  // the first N training digits; -1: all
  uint64_t seed = 0;
  bool shuffle = true;
  // Random transforms of the training digits, drawn per sample from the seed, the epoch
  // and the digit's index (DataPlan::AugmentKey): the same on any number of ranks.
  AugmentConfig augment;
  // Compute the prompt's fixed prefix (before the image) once and run each batch from
  // the image position on (exact; false runs the whole prompt, for measuring).
  bool reuse_prefix_kv = true;
  // Loss scaling of the backward pass: always on for a float16 model (whatever `enabled`
  // says), off otherwise unless enabled here.
  LossScaleConfig loss_scale;

  // Samples per optimizer step over all ranks.
  int64_t global_batch() const { return batch_size * grad_accum * world_size; }
  absl::Status Validate() const;
};

struct StepStats {
  int64_t step = 0;         // the optimizer step these gradients belong to
  double loss_sum = 0.0;    // this rank's summed answer-token losses
  int64_t tokens = 0;       // this rank's answer tokens
  int64_t samples = 0;      // this rank's samples
  double lr = 0.0;          // set by ApplyGradients
  double loss_scale = 1.0;  // what the loss was multiplied by in the backward pass
  bool skipped = false;     // set by ApplyGradients: the gradients overflowed, no update
  // Set by ApplyGradients: the L2 norm of the whole step's (unscaled) projector gradient,
  // as the optimizer sees it; not finite when the gradients overflowed.
  double grad_norm = 0.0;
  double loss() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
};

// Resumable position: everything that, with the config and the checkpoint's tensors,
// continues a run bit for bit.
struct TrainState {
  int64_t step = 0;           // optimizer steps done
  nlohmann::json loss_scale;  // the LossScaler's state as saved; null when it is off
  std::string ToJson(const TrainConfig& config) const;
  static absl::StatusOr<TrainState> FromJson(const std::string& json, const std::string& source);
};

class Trainer {
 public:
  // `model`, `prompts` and `train` must outlive the trainer; its first
  // config.train_digits samples are used. Every forward pass runs under `forward`.
  // Pass a checkpoint path in `resume_from` to continue a run (empty: start fresh).
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const LlamaModel& model, const ForwardOptions& forward, const PromptBuilder& prompts,
      const MnistSet& train, const TrainConfig& config, const std::string& resume_from);
  // The same, resuming from a checkpoint already in memory (a worker downloads it from
  // the coordinator); null starts fresh.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const LlamaModel& model, const ForwardOptions& forward, const PromptBuilder& prompts,
      const MnistSet& train, const TrainConfig& config, const TrainCheckpoint* resume);

  // A fresh run starting from another run's projector (TrainSpec.init_from): copies
  // `checkpoint`'s weights into the projector; the optimizer state, schedule and step stay
  // fresh. FAILED_PRECONDITION after a step; INVALID_ARGUMENT for a projector that does
  // not fit (CheckProjectorCompatible).
  absl::Status InitProjectorFrom(const TrainCheckpoint& checkpoint);

  int64_t total_steps() const { return plan_.total_steps(); }
  int64_t step() const { return state_.step; }
  bool done() const { return state_.step >= plan_.total_steps(); }
  const DataPlan& plan() const { return plan_; }
  const TrainConfig& config() const { return config_; }
  Projector& projector() { return projector_; }
  Optimizer& optimizer() { return *optimizer_; }

  // Forward and backward of this rank's share of the current step; leaves the gradient
  // of the step's mean answer-token loss (over all ranks' tokens) in the projector's
  // .grad, so that summing the ranks' gradients gives the whole step's gradient.
  StepStats ComputeGradients(int64_t rank);
  // Forward and backward of `share`, samples of the current step (a distributed worker
  // gets them from the coordinator's shard), accumulating d(sum of the share's answer-
  // token losses / normalizer) into the projector's .grad. A worker passes 1 and divides
  // by the group's all-reduced token count afterwards.
  StepStats ComputeShareGradients(const std::vector<PlannedSample>& share, double normalizer);
  // Answer tokens of `samples` (every rank's, for the loss normalizer).
  int64_t AnswerTokens(const std::vector<PlannedSample>& samples) const;
  // The learning rate of the current step, the optimizer step, and zeroed gradients.
  // Gradients that are not finite skip the update when the loss is scaled (the scale
  // backs off) and fail the step otherwise; either way the step counts as done.
  absl::Status ApplyGradients(StepStats* stats);
  // ComputeGradients(0) + ApplyGradients for a world of one.
  absl::StatusOr<StepStats> TrainStep();
  const LossScaler& loss_scaler() const { return scaler_; }

  // Projector, optimizer state and TrainState, written atomically.
  absl::Status SaveCheckpoint(const std::string& path) const;
  absl::StatusOr<std::string> SerializeCheckpoint() const;

 private:
  Trainer(const LlamaModel& model, const ForwardOptions& forward, const PromptBuilder& prompts,
          const MnistSet& train, const TrainConfig& config);
  // The L2 norm of the projector's gradients, summed in float64 (so it is finite exactly
  // when every gradient is); one host synchronization.
  double GradientNorm();
  // state_ with the loss scaler's current state, as a checkpoint records it.
  std::string StateJson() const;
  const LlamaModel& model_;
  const ForwardOptions forward_;
  const PromptBuilder& prompts_;
  TrainConfig config_;
  DataPlan plan_;
  at::Tensor pixels_;  // [N, 784] float32 in [0, 1], on the model's device
  int64_t image_rows_ = 28, image_cols_ = 28;
  std::vector<int64_t> labels_;
  Projector projector_{nullptr};
  std::unique_ptr<Optimizer> optimizer_;
  TrainState state_;
  LossScaler scaler_;
  std::unique_ptr<PromptPrefix> prefix_;  // made at the first step (reuse_prefix_kv)
};

}  // namespace llava
