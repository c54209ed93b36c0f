#include "worker/worker_tasks.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/elapsed.h"
#include "common/job_spec.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/train_checkpoint.h"
#include "worker/evaluator.h"
#include "worker/projector_share.h"
#include "worker/train_spec.h"
#include "worker/trainer.h"

namespace llava {
namespace {

TaskOutcome Fail(absl::Status status, bool retryable, int64_t step = 0) {
  TaskOutcome out;
  out.status = std::move(status);
  out.retryable = retryable;
  out.step = step;
  return out;
}

// The trainer's configuration from a resolved spec, as `llava-mnist train --recipe` builds
// it. The spec's world_size sets the global batch (TrainTask.world_size is this attempt's
// group).
absl::StatusOr<TrainConfig> TrainConfigFromTask(const v1::TrainTask& t, const WorkerResources& r) {
  const v1::TrainSpec& spec = t.spec();
  if (!spec.model().empty() && spec.model() != r.model_spec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the job wants model '", spec.model(), "' but this worker has '", r.model_spec, "'"));
  }
  return TrainConfigFromSpec(spec, r.model_spec, r.model->config.hidden_size);
}

// The projector's gradients and two scalars (this rank's answer tokens and loss sum) in
// one flat float32 buffer, so that one all-reduce carries the whole step.
at::Tensor PackGradients(Projector& projector, const StepStats& stats) {
  std::vector<at::Tensor> parts;
  for (const auto& p : projector->parameters()) parts.push_back(p.grad().reshape({-1}));
  const auto options = parts[0].options();
  parts.push_back(at::tensor({static_cast<float>(stats.tokens), static_cast<float>(stats.loss_sum)},
                             at::TensorOptions().dtype(at::kFloat))
                      .to(options.device()));
  return at::cat(parts);  // [P + 2]
}

// Writes the summed gradients back divided by the group's token count: the gradient of
// the mean answer-token loss over the whole global batch, as one process computes it.
void UnpackGradients(Projector& projector, const at::Tensor& buffer, double total_tokens) {
  int64_t offset = 0;
  at::NoGradGuard no_grad;
  for (const auto& p : projector->parameters()) {
    const int64_t n = p.numel();
    p.grad().copy_(buffer.narrow(0, offset, n).view_as(p.grad()) / total_tokens);
    offset += n;
  }
}

// The attempt's group on the worker's engine: Gloo on the CPU, NCCL on the model's GPU.
CollectiveOptions GroupOptions(const TaskEnv& env, int64_t rank, int64_t world_size,
                               const std::string& prefix, int64_t timeout_ms) {
  CollectiveOptions co;
  co.engine = env.collective_engine;
  co.rank = rank;
  co.world_size = world_size;
  co.prefix = prefix;
  co.timeout = std::chrono::milliseconds(timeout_ms);
  co.gloo_host = env.gloo_host;
  const at::Device device = env.resources.model->device;
  co.cuda_device = device.is_cuda() && device.index() >= 0 ? device.index() : 0;
  return co;
}

absl::StatusOr<v1::CheckpointInfo> Upload(const TaskEnv& env, const v1::TaskRef& ref,
                                          Trainer& trainer, bool final) {
  LM_ASSIGN_OR_RETURN(std::string bytes, trainer.SerializeCheckpoint());
  v1::CheckpointHeader header;
  *header.mutable_ref() = ref;
  header.set_step(trainer.step());
  header.set_final(final);
  return env.client->UploadCheckpoint(header, bytes);
}

// A fresh attempt of a job with init_from: the projector's weights from that checkpoint
// (its projector-only copy), the rest fresh. INVALID_ARGUMENT when it does not fit.
absl::Status InitFrom(const TaskEnv& env, const std::string& checkpoint_id, Trainer& trainer) {
  LM_ASSIGN_OR_RETURN(auto download,
                      env.client->DownloadCheckpoint(checkpoint_id, /*projector_only=*/true));
  auto parsed = ParseTrainCheckpoint(std::move(download.bytes), checkpoint_id);
  if (!parsed.ok()) return absl::InvalidArgumentError(parsed.status().message());
  LM_LOG(INFO) << "projector initialized from " << checkpoint_id;
  return trainer.InitProjectorFrom(*parsed);
}

// A training rank's trainer, with the prompts it refers to (on the heap, so that the pair
// can move).
struct PreparedTrainer {
  std::unique_ptr<PromptBuilder> prompts;
  std::unique_ptr<Trainer> trainer;
};

// The trainer of the task's spec: resumed from the task's checkpoint, or fresh (its
// projector from init_from when the spec names one). On error `*retryable` is false when
// the spec or a checkpoint is bad (a restart would fail the same way), true when a
// download failed.
absl::StatusOr<PreparedTrainer> PrepareTrainer(const v1::TrainTask& t, const TaskEnv& env,
                                               bool* retryable) {
  const WorkerResources& r = env.resources;
  *retryable = false;
  LM_ASSIGN_OR_RETURN(const TrainConfig config, TrainConfigFromTask(t, r));
  LM_ASSIGN_OR_RETURN(const PromptConfig prompt_config, PromptFromSpec(t.spec()));
  LM_ASSIGN_OR_RETURN(PromptBuilder prompts, PromptBuilder::Create(*r.tokenizer, prompt_config));
  PreparedTrainer out;
  out.prompts = std::make_unique<PromptBuilder>(std::move(prompts));
  std::unique_ptr<TrainCheckpoint> resume;
  if (!t.resume_checkpoint_id().empty()) {
    *retryable = true;
    LM_ASSIGN_OR_RETURN(CheckpointDownload download,
                        env.client->DownloadCheckpoint(t.resume_checkpoint_id()));
    *retryable = false;
    LM_ASSIGN_OR_RETURN(TrainCheckpoint parsed,
                        ParseTrainCheckpoint(std::move(download.bytes), t.resume_checkpoint_id()));
    resume = std::make_unique<TrainCheckpoint>(std::move(parsed));
  }
  LM_ASSIGN_OR_RETURN(out.trainer, Trainer::Create(*r.model, r.forward, *out.prompts, *r.train,
                                                   config, resume.get()));
  if (resume == nullptr && !t.spec().init_from().empty()) {
    if (absl::Status s = InitFrom(env, t.spec().init_from(), *out.trainer); !s.ok()) {
      *retryable = !absl::IsInvalidArgument(s);
      return s;
    }
  }
  return out;
}

// This rank's place in the attempt's group, on the worker's engine, handed to
// env.on_collective while it lives so that an abort from the heartbeat thread reaches it.
// Any error is retryable: another attempt forms a new group.
absl::StatusOr<AttachedCollective> JoinGroup(const v1::Task& task, const TaskEnv& env) {
  const v1::TrainTask& t = task.train();
  const CollectiveOptions co = GroupOptions(env, task.ref().rank(), t.world_size(),
                                            t.rendezvous_prefix(), t.collective_timeout_ms());
  absl::StatusOr<std::unique_ptr<Collective>> group =
      env.make_collective ? env.make_collective(co, env.client) : CreateCollective(co, env.client);
  if (!group.ok()) return group.status();
  return AttachedCollective(*std::move(group), env.on_collective);
}

// This rank's samples of the trainer's next step, from the coordinator's shard of the
// step's epoch. `shard` holds the epoch's shard from step to step: it is fetched when the
// epoch changes, between steps, never inside one (no rank waits on the coordinator in a
// step). On error `*retryable` is false when the shard lacks the step (the coordinator's
// plan and the trainer's disagree, which a restart repeats), true when the fetch failed.
absl::StatusOr<std::vector<PlannedSample>> FetchStepShare(const v1::TaskRef& ref,
                                                          const TaskEnv& env,
                                                          const Trainer& trainer, v1::Shard* shard,
                                                          bool* retryable) {
  const int64_t step = trainer.step();
  const int64_t epoch = trainer.plan().EpochOfStep(step);
  *retryable = true;
  if (shard->epoch() != epoch) {
    LM_ASSIGN_OR_RETURN(*shard, env.client->GetShard(ref, epoch));
  }
  const int64_t offset = step - epoch * trainer.plan().steps_per_epoch();
  if (offset < 0 || offset >= shard->steps_size() || shard->steps(offset).step() != step) {
    *retryable = false;
    return absl::InternalError(absl::StrCat("the shard of epoch ", epoch, " lacks step ", step));
  }
  const v1::StepShare& share = shard->steps(offset);
  std::vector<PlannedSample> mine;
  for (int i = 0; i < share.index_size(); ++i) {
    mine.push_back({share.index(i), share.question(i), share.answer_template(i)});
  }
  return mine;
}

// The samples a rank's steps have trained on since `start`, for its samples per second.
struct TrainRate {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  int64_t samples = 0;
};

// One step of the group: this rank's gradients of `mine`, summed over the group together
// with the answer tokens and loss sums, divided by the group's tokens, and applied. Returns
// the step's metrics: the group's loss, this rank's times. On error `*retryable` is false
// when the update failed (the same step from the same checkpoint would fail the same way),
// true when the all-reduce did.
absl::StatusOr<v1::StepMetrics> TrainStep(Trainer& trainer, Collective& group,
                                          const std::vector<PlannedSample>& mine, TrainRate* rate,
                                          bool* retryable) {
  const int64_t step = trainer.step();
  const int64_t epoch = trainer.plan().EpochOfStep(step);
  const auto step_start = std::chrono::steady_clock::now();
  StepStats stats = trainer.ComputeShareGradients(mine, 1.0);
  const auto reduce_start = std::chrono::steady_clock::now();
  at::Tensor buffer = PackGradients(trainer.projector(), stats);
  *retryable = true;
  LM_RETURN_IF_ERROR(group.AllReduceSum(buffer));
  const at::Tensor totals = buffer.narrow(0, buffer.numel() - 2, 2).to(at::kCPU);
  const double total_tokens = totals[0].item<double>();
  const double reduce_ms = MsSince(reduce_start);
  UnpackGradients(trainer.projector(), buffer, std::max(total_tokens, 1.0));
  *retryable = false;
  LM_RETURN_IF_ERROR(trainer.ApplyGradients(&stats));
  rate->samples += trainer.config().global_batch();
  // Every rank reports its own step time; the loss is the group's after the all-reduce.
  v1::StepMetrics m;
  m.set_step(step + 1);
  m.set_epoch(epoch);
  m.set_loss(totals[1].item<double>() / std::max(total_tokens, 1.0));
  m.set_lr(stats.lr);
  m.set_samples_per_s(rate->samples / std::max(MsSince(rate->start) / 1000.0, 1e-9));
  m.set_step_ms(MsSince(step_start));
  m.set_allreduce_ms(reduce_ms);
  m.set_grad_norm(stats.grad_norm);
  if (trainer.loss_scaler().enabled()) {
    m.set_loss_scale(stats.loss_scale);
    m.set_skipped_steps(trainer.loss_scaler().skipped_steps());
  }
  return m;
}

// Whether rank 0 uploads a checkpoint after the step just done: every
// checkpoint_every_steps steps, but not after the last (its checkpoint is the final one).
bool StepCheckpointDue(const v1::Task& task, const Trainer& trainer) {
  const int64_t every = task.train().spec().checkpoint_every_steps();
  return task.ref().rank() == 0 && every > 0 && trainer.step() % every == 0 && !trainer.done();
}

// Rank 0's checkpoint of the trainer's state: a periodic one (`final` false; `loss` is the
// step's, for the log) or the last. Any error is retryable: another attempt resumes from
// the last checkpoint kept.
absl::Status UploadCheckpoint(const TaskEnv& env, const v1::TaskRef& ref, Trainer& trainer,
                              bool final, double loss) {
  LM_ASSIGN_OR_RETURN(const v1::CheckpointInfo info, Upload(env, ref, trainer, final));
  if (final) {
    LM_LOG(INFO) << "job " << ref.job_id() << ": final checkpoint " << info.checkpoint_id();
  } else {
    LM_LOG(INFO) << "job " << ref.job_id() << " attempt " << ref.attempt() << " rank 0 step "
                 << trainer.step() << "/" << trainer.total_steps() << ": loss " << loss
                 << ", checkpoint " << info.checkpoint_id();
  }
  return absl::OkStatus();
}

}  // namespace

TaskOutcome RunTrainTask(const v1::Task& task, const TaskEnv& env) {
  const v1::TrainTask& t = task.train();
  const v1::TaskRef& ref = task.ref();
  bool retryable = false;
  auto prepared = PrepareTrainer(t, env, &retryable);
  if (!prepared.ok()) return Fail(prepared.status(), retryable);
  Trainer& trainer = *prepared->trainer;

  auto group = JoinGroup(task, env);
  if (!group.ok()) return Fail(group.status(), true, trainer.step());

  LM_LOG(INFO) << "job " << ref.job_id() << " attempt " << ref.attempt() << " rank " << ref.rank()
               << "/" << t.world_size() << ": steps " << trainer.step() << ".."
               << trainer.total_steps();
  v1::Shard shard;
  shard.set_epoch(-1);
  TrainRate rate;
  while (!trainer.done()) {
    const int64_t step = trainer.step();
    if (env.abort->load()) {
      return Fail(absl::AbortedError("aborted by the coordinator"), true, step);
    }
    auto mine = FetchStepShare(ref, env, trainer, &shard, &retryable);
    if (!mine.ok()) return Fail(mine.status(), retryable, step);
    auto metrics = TrainStep(trainer, *group->get(), *mine, &rate, &retryable);
    if (!metrics.ok()) return Fail(metrics.status(), retryable, step);
    env.on_step(*metrics);
    if (StepCheckpointDue(task, trainer)) {
      absl::Status s = UploadCheckpoint(env, ref, trainer, /*final=*/false, metrics->loss());
      if (!s.ok()) return Fail(s, true, trainer.step());
    }
  }
  if (ref.rank() == 0) {
    absl::Status s = UploadCheckpoint(env, ref, trainer, /*final=*/true, /*loss=*/0);
    if (!s.ok()) return Fail(s, true, trainer.step());
  }
  TaskOutcome out;
  out.step = trainer.step();
  return out;
}

namespace {

// The checkpoint's projector on the model's device: from the worker's cache when the
// same checkpoint was evaluated last under this session, else fetched and restored (and
// cached). A task of one rank downloads it; the ranks of a larger attempt share one
// download (worker/projector_share.h).
struct CachedProjector {
  ProjectorConfig config;
  Projector projector{nullptr};
  std::string how;  // where it came from, for the task's log line
  // The eval group, when one was needed: kept until the task ends.
  AttachedCollective group;
};

bool CacheHolds(const v1::EvalTask& t, const TaskEnv& env) {
  const EvalCheckpointCache* cache = env.eval_cache;
  return cache != nullptr && cache->projector && !cache->projector_bytes.empty() &&
         cache->checkpoint_id == t.checkpoint_id() && !t.checkpoint_sha256().empty() &&
         cache->checkpoint_sha256 == t.checkpoint_sha256() && cache->session_id == env.session_id;
}

absl::StatusOr<std::string> DownloadProjector(const v1::EvalTask& t, const TaskEnv& env) {
  LM_ASSIGN_OR_RETURN(CheckpointDownload download,
                      env.client->DownloadCheckpoint(t.checkpoint_id(), /*projector_only=*/true));
  return std::move(download.bytes);
}

// Parses and restores the projector-only bytes on the model's device, and caches them.
absl::StatusOr<CachedProjector> Restore(const v1::EvalTask& t, const TaskEnv& env,
                                        std::string bytes) {
  LM_ASSIGN_OR_RETURN(TrainCheckpoint ckpt, ParseTrainCheckpoint(bytes, t.checkpoint_id()));
  const LlamaModel& model = *env.resources.model;
  LM_ASSIGN_OR_RETURN(Projector projector,
                      RestoreProjectorForModel(ckpt, model.config.hidden_size, model.device));
  if (env.eval_cache != nullptr) {
    *env.eval_cache =
        EvalCheckpointCache{env.session_id,   t.checkpoint_id(),     t.checkpoint_sha256(),
                            std::move(bytes), ckpt.projector_config, projector};
  }
  CachedProjector out;
  out.config = ckpt.projector_config;
  out.projector = projector;
  return out;
}

CachedProjector FromCache(const TaskEnv& env) {
  CachedProjector out;
  out.config = env.eval_cache->config;
  out.projector = env.eval_cache->projector;
  out.how = "cached";
  return out;
}

absl::StatusOr<CachedProjector> EvalProjector(const v1::EvalTask& t, const TaskEnv& env,
                                              int64_t rank, bool* retryable) {
  const bool cached = CacheHolds(t, env);
  *retryable = true;
  if (t.world_size() <= 1) {  // one rank: nothing to share
    if (cached) return FromCache(env);
    const auto start = std::chrono::steady_clock::now();
    LM_ASSIGN_OR_RETURN(std::string bytes, DownloadProjector(t, env));
    const double download_ms = MsSince(start);
    *retryable = false;
    LM_ASSIGN_OR_RETURN(CachedProjector out, Restore(t, env, std::move(bytes)));
    out.how = absl::StrCat("downloaded in ", download_ms, " ms");
    return out;
  }
  ProjectorShareOptions options;
  options.collective =
      GroupOptions(env, rank, t.world_size(), t.rendezvous_prefix(), t.collective_timeout_ms());
  // The bytes live on the host: where this build has Gloo, a GPU worker's eval group uses
  // it too, sparing the staging on the GPU and an NCCL communicator's setup, which costs
  // about as much as the download the group saves.
  if (HaveEngine("gloo")) options.collective.engine = "gloo";
  options.have = cached;
  auto fetch = [&]() -> absl::StatusOr<std::string> {
    if (cached) return env.eval_cache->projector_bytes;
    return DownloadProjector(t, env);
  };
  LM_ASSIGN_OR_RETURN(ProjectorShare share,
                      ShareProjector(options, env.client, fetch, env.on_collective));
  CachedProjector out;
  if (cached) {
    out = FromCache(env);
  } else {
    *retryable = false;
    LM_ASSIGN_OR_RETURN(out, Restore(t, env, std::move(share.bytes)));
  }
  if (share.group.get() != nullptr) {
    const std::string source = cached ? std::string("cached")
                               : share.fetched
                                   ? absl::StrCat("downloaded in ", share.fetch_ms, " ms")
                                   : std::string("from rank 0");
    out.how = absl::StrCat(source, "; group of ", t.world_size(), " met in ", share.group_ms,
                           " ms, broadcast ", share.broadcast_ms, " ms");
  }
  out.group = std::move(share.group);
  return out;
}

}  // namespace

TaskOutcome RunEvalTask(const v1::Task& task, const TaskEnv& env) {
  const auto start = std::chrono::steady_clock::now();
  const v1::EvalTask& t = task.eval();
  const WorkerResources& r = env.resources;
  if (!t.spec().model().empty() && t.spec().model() != r.model_spec) {
    return Fail(
        absl::FailedPreconditionError(absl::StrCat("the job wants model '", t.spec().model(),
                                                   "' but this worker has '", r.model_spec, "'")),
        false);
  }
  if (t.begin() < 0 || t.end() > r.test->size() || t.begin() >= t.end()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("eval range [", t.begin(), ", ", t.end(),
                                                        ") is outside the ", r.test->size(),
                                                        " test digits")),
                false);
  }
  bool retryable = false;
  auto projector = EvalProjector(t, env, task.ref().rank(), &retryable);
  if (!projector.ok()) return Fail(projector.status(), retryable);
  const double projector_ms = MsSince(start);
  auto prompt_config = PromptFromSpec(t.spec(), projector->config.image_tokens);
  if (!prompt_config.ok()) return Fail(prompt_config.status(), false);
  auto prompts = PromptBuilder::Create(*r.tokenizer, *prompt_config);
  if (!prompts.ok()) return Fail(prompts.status(), false);
  EvalConfig config;
  config.batch_size = t.spec().batch_size();
  config.max_new_tokens = t.spec().max_new_tokens();
  EvalReport report(prompt_config->questions);
  EvalInputs inputs{r.model, &projector->projector, &*prompts, r.tokenizer, r.test, r.forward};
  const auto answers_start = std::chrono::steady_clock::now();
  double first_batch_ms = -1;
  absl::Status s =
      EvaluateRange(inputs, t.begin(), t.end(), config, &report, [&](int64_t done, int64_t) {
        if (first_batch_ms < 0) first_batch_ms = MsSince(answers_start);
        env.on_eval_progress(done);
      });
  if (!s.ok()) return Fail(s, false);
  const double answers_ms = MsSince(answers_start);
  TaskOutcome out;
  out.eval_report_json = report.ToJson();
  // Where an eval task's time goes, for the fixed cost of a job (bench/RESULTS.md).
  LM_LOG(INFO) << "eval task " << task.ref().job_id() << " rank " << task.ref().rank() << ": "
               << report.NumSamples() << " answers in " << MsSince(start) << " ms: projector "
               << projector_ms << " ms (" << projector->how << "), answers " << answers_ms
               << " ms (first batch " << first_batch_ms << " ms), report "
               << MsSince(answers_start) - answers_ms << " ms";
  return out;
}

absl::Status WarmUpEval(const WorkerResources& r) {
  if (r.test->size() == 0) return absl::InvalidArgumentError("no test digits to warm up on");
  v1::EvalSpec spec;  // the defaults a job gets
  spec.set_checkpoint("warm-up");
  LM_RETURN_IF_ERROR(ResolveEvalSpec(&spec));
  LM_ASSIGN_OR_RETURN(PromptConfig prompt_config, PromptFromSpec(spec, 1));
  LM_ASSIGN_OR_RETURN(PromptBuilder prompts, PromptBuilder::Create(*r.tokenizer, prompt_config));
  ProjectorConfig pc;
  pc.output_dim = r.model->config.hidden_size;
  pc.image_tokens = prompt_config.image_tokens;
  Projector projector(pc, /*seed=*/0);
  projector->to(r.model->device);
  EvalConfig config;
  config.batch_size = 2;
  config.max_new_tokens = 2;
  config.stop_at_eos = false;
  EvalReport report(prompt_config.questions);
  EvalInputs inputs{r.model, &projector, &prompts, r.tokenizer, r.test, r.forward};
  return EvaluateRange(inputs, 0, std::min<int64_t>(2, r.test->size()), config, &report);
}

}  // namespace llava
