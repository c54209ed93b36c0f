#include "worker/trainer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/augment.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/validation.h"
#include "common/train_checkpoint.h"
#include "common/vlm.h"

namespace llava {
namespace {

std::vector<PromptSample> ToPromptSamples(const std::vector<PlannedSample>& planned,
                                          const std::vector<int64_t>& labels) {
  std::vector<PromptSample> out;
  out.reserve(planned.size());
  for (const PlannedSample& p : planned) {
    out.push_back({p.question, p.answer_template, labels[p.index]});
  }
  return out;
}

// The first train_digits samples, or all of them for -1.
int64_t UsedDigits(const TrainConfig& config, const MnistSet& train) {
  return config.train_digits < 0 ? train.size() : std::min(config.train_digits, train.size());
}

}  // namespace

absl::Status TrainConfig::Validate() const {
  LM_RETURN_IF_ERROR(CheckPositive("batch_size", batch_size));
  LM_RETURN_IF_ERROR(CheckPositive("grad_accum", grad_accum));
  LM_RETURN_IF_ERROR(CheckPositive("world_size", world_size));
  LM_RETURN_IF_ERROR(CheckPositive("epochs", epochs));
  if (train_digits == 0 || train_digits < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("train_digits must be > 0 or -1 (all), got ", train_digits));
  }
  if (max_steps < -1) return absl::InvalidArgumentError("max_steps must be >= -1");
  int64_t per_rank = 0, global = 0;
  if (!CheckedMul(batch_size, grad_accum, &per_rank) ||
      !CheckedMul(per_rank, world_size, &global)) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size x grad_accum x world_size (",
                                                   batch_size, " x ", grad_accum, " x ", world_size,
                                                   ") overflows"));
  }
  LM_RETURN_IF_ERROR(projector.Validate());
  LM_RETURN_IF_ERROR(optimizer.Validate());
  LM_RETURN_IF_ERROR(schedule.Validate());
  LM_RETURN_IF_ERROR(loss_scale.Validate());
  LM_RETURN_IF_ERROR(augment.Validate());
  return absl::OkStatus();
}

std::string TrainState::ToJson(const TrainConfig& c) const {
  nlohmann::json j;
  j["step"] = step;
  // The config travels with the state so that a checkpoint says how it was made.
  j["config"] = {{"batch_size", c.batch_size},
                 {"grad_accum", c.grad_accum},
                 {"world_size", c.world_size},
                 {"epochs", c.epochs},
                 {"max_steps", c.max_steps},
                 {"train_digits", c.train_digits},
                 {"seed", c.seed},
                 {"shuffle", c.shuffle},
                 {"lr", c.optimizer.lr},
                 {"optimizer", c.optimizer.type},
                 {"schedule", c.schedule.type}};
  if (c.augment.enabled()) {
    j["config"]["augment"] = {{"shift_px", c.augment.shift_px},
                              {"rotate_deg", c.augment.rotate_deg},
                              {"scale", c.augment.scale}};
  }
  if (!loss_scale.is_null()) j["loss_scale"] = loss_scale;
  return j.dump();
}

absl::StatusOr<TrainState> TrainState::FromJson(const std::string& text,
                                                const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": train_state is not a JSON object"));
  }
  auto it = j.find("step");
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": train_state.step is missing or bad"));
  }
  TrainState s;
  s.step = it->get<int64_t>();
  if (auto ls = j.find("loss_scale"); ls != j.end()) s.loss_scale = *ls;
  return s;
}

Trainer::Trainer(const LlamaModel& model, const ForwardOptions& forward,
                 const PromptBuilder& prompts, const MnistSet& train, const TrainConfig& config)
    : model_(model),
      forward_(forward),
      prompts_(prompts),
      config_(config),
      plan_(DataPlanConfig{UsedDigits(config, train), config.global_batch(), config.epochs,
                           config.max_steps, config.seed, config.shuffle,
                           static_cast<int64_t>(prompts.config().questions.size()),
                           static_cast<int64_t>(prompts.config().answer_templates.size())}),
      scaler_([&] {
        // float16's range (6e-8 .. 65,504) does not hold a backward pass unscaled.
        LossScaleConfig c = config.loss_scale;
        c.enabled = c.enabled || model.dtype == at::kHalf;
        return c;
      }()) {}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(
    const LlamaModel& model, const ForwardOptions& forward, const PromptBuilder& prompts,
    const MnistSet& train, const TrainConfig& config, const std::string& resume_from) {
  if (resume_from.empty()) return Create(model, forward, prompts, train, config, nullptr);
  LM_ASSIGN_OR_RETURN(TrainCheckpoint ckpt, LoadTrainCheckpoint(resume_from));
  return Create(model, forward, prompts, train, config, &ckpt);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(
    const LlamaModel& model, const ForwardOptions& forward, const PromptBuilder& prompts,
    const MnistSet& train, const TrainConfig& config, const TrainCheckpoint* resume) {
  LM_RETURN_IF_ERROR(config.Validate());
  if (train.size() == 0) return absl::InvalidArgumentError("the training set is empty");
  LM_RETURN_IF_ERROR(
      CheckProjectorFitsModel(config.projector, model.config.hidden_size, "--projector"));
  if (config.projector.image_tokens != prompts.config().image_tokens) {
    return absl::InvalidArgumentError("projector and prompt disagree on image_tokens");
  }
  std::unique_ptr<Trainer> t(new Trainer(model, forward, prompts, train, config));
  const int64_t n = UsedDigits(config, train);
  // The training digits live on the device for the whole run: no host->device copy in
  // the step (28 MB for all 9,000 digits).
  t->pixels_ = ImagesToTensor(train, 0, n).to(model.device);  // [N, 784]
  t->labels_.assign(train.labels.begin(), train.labels.begin() + n);
  t->image_rows_ = train.rows;
  t->image_cols_ = train.cols;
  std::vector<NamedTensor> optimizer_state;  // from the checkpoint when resuming
  if (resume == nullptr) {
    t->projector_ = Projector(config.projector, config.seed);
  } else {
    const TrainCheckpoint& ckpt = *resume;
    const std::string& resume_from = ckpt.source;
    if (ckpt.projector_config.ToJson() != config.projector.ToJson()) {
      return absl::InvalidArgumentError(
          absl::StrCat(resume_from, ": its projector (", ckpt.projector_config.ToJson(),
                       ") differs from the requested one (", config.projector.ToJson(), ")"));
    }
    LM_ASSIGN_OR_RETURN(t->projector_, RestoreProjector(ckpt, at::kCPU));
    LM_ASSIGN_OR_RETURN(t->state_, TrainState::FromJson(ckpt.train_state_json, resume_from));
    if (ckpt.optimizer_state.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(resume_from, ": holds no optimizer state, so it cannot resume training"));
    }
    optimizer_state = ckpt.optimizer_state;
    if (t->scaler_.enabled() && !t->state_.loss_scale.is_null()) {
      LM_RETURN_IF_ERROR(t->scaler_.Restore(t->state_.loss_scale, resume_from));
    }
  }
  t->projector_->to(model.device);
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& p : t->projector_->named_parameters()) params.emplace_back(p.key(), p.value());
  LM_ASSIGN_OR_RETURN(t->optimizer_, Optimizer::Create(config.optimizer, params));
  if (!optimizer_state.empty()) {
    std::map<std::string, at::Tensor> state;
    for (NamedTensor& nt : optimizer_state) state[nt.name] = nt.tensor.to(model.device);
    LM_RETURN_IF_ERROR(t->optimizer_->LoadState(state));
  }
  return t;
}

absl::Status Trainer::InitProjectorFrom(const TrainCheckpoint& checkpoint) {
  if (state_.step != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot initialize the projector from ",
                                                      checkpoint.source, " at step ", state_.step));
  }
  LM_RETURN_IF_ERROR(CheckProjectorCompatible(checkpoint.projector_config, projector_->config(),
                                              checkpoint.source));
  auto params = projector_->NamedParameters();  // same order and shapes as the checkpoint's
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i)
    params[i].second.copy_(checkpoint.projector_tensors[i].tensor);
  return absl::OkStatus();
}

int64_t Trainer::AnswerTokens(const std::vector<PlannedSample>& samples) const {
  int64_t tokens = 0;
  for (const PlannedSample& s : samples) {
    tokens += static_cast<int64_t>(prompts_.AnswerIds(s.answer_template, labels_[s.index]).size());
  }
  return tokens;
}

StepStats Trainer::ComputeGradients(int64_t rank) {
  LM_CHECK(!done());
  // The step's samples are planned once and serve both the share and the normalizer.
  const std::vector<PlannedSample> all = plan_.StepSamples(state_.step);
  // Every rank divides by the whole step's token count, so the sum of the ranks'
  // gradients is the gradient of the step's mean token loss, as in one process.
  return ComputeShareGradients(DataPlan::RankShare(all, rank, config_.world_size),
                               static_cast<double>(AnswerTokens(all)));
}

StepStats Trainer::ComputeShareGradients(const std::vector<PlannedSample>& mine,
                                         double normalizer) {
  LM_CHECK(!done());
  StepStats stats;
  stats.step = state_.step;
  stats.loss_scale = scaler_.scale();
  at::Tensor loss_total = at::zeros({}, at::TensorOptions().device(model_.device));
  for (size_t begin = 0; begin < mine.size(); begin += config_.batch_size) {
    const size_t end = std::min(mine.size(), begin + static_cast<size_t>(config_.batch_size));
    std::vector<PlannedSample> micro(mine.begin() + begin, mine.begin() + end);
    PromptBatch batch = prompts_.Build(ToPromptSamples(micro, labels_));
    std::vector<int64_t> index;
    for (const PlannedSample& s : micro) index.push_back(s.index);
    at::Tensor idx = at::tensor(index, at::kLong).to(model_.device);
    at::Tensor pixels = pixels_.index_select(0, idx);  // [b, 784]
    if (config_.augment.enabled()) {
      const int64_t epoch = plan_.EpochOfStep(state_.step);
      std::vector<AugmentParams> params;
      params.reserve(micro.size());
      for (const PlannedSample& s : micro) {
        params.push_back(DrawAugmentParams(config_.augment, plan_.AugmentKey(epoch, s.index)));
      }
      pixels = TransformPixels(pixels, params, image_rows_, image_cols_);
    }
    at::Tensor image = projector_->forward(pixels);  // [b, k, D] f32
    AnswerLossTerms terms;
    if (config_.reuse_prefix_kv) {
      // The prefix is the same for every batch of a job; recomputed only if it changes.
      if (prefix_ == nullptr || !PrefixMatches(*prefix_, batch.ids, batch.image_position)) {
        prefix_ = std::make_unique<PromptPrefix>(
            ComputePromptPrefix(model_, forward_, batch.ids, batch.image_position));
      }
      terms = AnswerLossFromPrefix(model_, forward_, *prefix_, batch.ids, image,
                                   batch.image_position, batch.labels);
    } else {
      at::Tensor embeds = SpliceImageEmbeds(model_, batch.ids, image, batch.image_position);
      terms = AnswerLoss(model_, forward_, embeds, batch.labels);
    }
    // Scaled: the summed loss times the scale (see LossScaleConfig), divided out of the
    // float32 gradients below; unscaled, the loss over the normalizer as always.
    (scaler_.enabled() ? terms.sum * stats.loss_scale : terms.sum / normalizer).backward();
    loss_total = loss_total + terms.sum.detach();
    stats.tokens += terms.tokens;
    stats.samples += static_cast<int64_t>(micro.size());
  }
  if (scaler_.enabled()) {
    at::NoGradGuard no_grad;
    for (auto& p : projector_->parameters()) {
      if (p.grad().defined()) p.grad().mul_(1.0 / (stats.loss_scale * normalizer));
    }
  }
  // One host synchronization per step, after all the work is queued.
  stats.loss_sum = loss_total.item<double>();
  return stats;
}

double Trainer::GradientNorm() {
  at::Tensor squares;
  for (auto& p : projector_->parameters()) {
    if (!p.grad().defined()) continue;
    at::Tensor s = p.grad().to(at::kDouble).square().sum();
    squares = squares.defined() ? squares + s : s;
  }
  return squares.defined() ? std::sqrt(squares.item<double>()) : 0.0;
}

absl::Status Trainer::ApplyGradients(StepStats* stats) {
  stats->lr = LearningRate(config_.optimizer, config_.schedule, state_.step, total_steps());
  // Checked on the group's summed gradients (a worker calls this after the all-reduce),
  // so every rank takes the same decision.
  stats->grad_norm = GradientNorm();
  const bool finite = std::isfinite(stats->grad_norm);
  if (!finite && !scaler_.enabled()) {
    return absl::InternalError(absl::StrCat(
        "step ", state_.step, ": the projector's gradients are not finite (this rank's loss ",
        stats->loss(), "); the projector is left as it was at the step's start"));
  }
  LM_RETURN_IF_ERROR(scaler_.Update(finite));
  stats->skipped = !finite;
  if (finite) {
    optimizer_->Step(stats->lr);
  } else {
    LM_LOG(WARNING) << "step " << state_.step << ": float16 gradients overflowed at loss scale "
                    << stats->loss_scale << ", update skipped, scale now " << scaler_.scale();
  }
  optimizer_->ZeroGrad();
  ++state_.step;
  return absl::OkStatus();
}

absl::StatusOr<StepStats> Trainer::TrainStep() {
  LM_CHECK_EQ(config_.world_size, 1);
  StepStats stats = ComputeGradients(0);
  LM_RETURN_IF_ERROR(ApplyGradients(&stats));
  return stats;
}

std::string Trainer::StateJson() const {
  TrainState s = state_;
  s.loss_scale = scaler_.enabled() ? scaler_.ToJson() : nlohmann::json();
  return s.ToJson(config_);
}

absl::Status Trainer::SaveCheckpoint(const std::string& path) const {
  return SaveTrainCheckpoint(path, const_cast<Projector&>(projector_), optimizer_.get(),
                             StateJson(), config_.model_spec);
}

absl::StatusOr<std::string> Trainer::SerializeCheckpoint() const {
  return SerializeTrainCheckpoint(const_cast<Projector&>(projector_), optimizer_.get(), StateJson(),
                                  config_.model_spec);
}

}  // namespace llava
