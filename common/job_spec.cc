#include "common/job_spec.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace llava {
namespace {

absl::Status Prefixed(const char* prefix, const absl::Status& s) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

}  // namespace

bool SameTask(const v1::TaskRef& a, const v1::TaskRef& b) {
  return a.job_id() == b.job_id() && a.attempt() == b.attempt() && a.rank() == b.rank();
}

bool IsTerminal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

std::vector<std::string> DefaultEvalQuestions() {
  return {"What digit is this?", "What is this number?"};
}

absl::StatusOr<int64_t> GlobalBatch(const v1::TrainSpec& s, int64_t world_size) {
  int64_t per_rank = 0, global = 0;
  if (!CheckedMul(s.batch_size(), s.grad_accum(), &per_rank) ||
      !CheckedMul(per_rank, world_size, &global) || global <= 0 ||
      global > JobLimits::kMaxGlobalBatch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train: the global batch batch_size x grad_accum x world_size (", s.batch_size(), " x ",
        s.grad_accum(), " x ", world_size, ") must be in [1, ", JobLimits::kMaxGlobalBatch, "]"));
  }
  return global;
}

namespace {

absl::Status CheckPhrasings(const std::string& field,
                            const google::protobuf::RepeatedPtrField<std::string>& values) {
  if (values.size() > JobLimits::kMaxPhrasings) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " has ", values.size(), " entries, over the limit of ", JobLimits::kMaxPhrasings));
  }
  for (int i = 0; i < values.size(); ++i) {
    LM_RETURN_IF_ERROR(CheckText(absl::StrCat(field, "[", i, "]"), values[i],
                                 JobLimits::kMaxPhrasingBytes, /*allow_empty=*/false));
  }
  return absl::OkStatus();
}

// -1 (all) or 1..max.
absl::Status AllOrRange(const char* field, int64_t v, int64_t max) {
  if (v == -1) return absl::OkStatus();
  if (v < 1 || v > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be -1 (all) or in [1, ", max, "], got ", v));
  }
  return absl::OkStatus();
}

void FillTrainDefaults(v1::TrainSpec* s) {
  const OptimizerConfig opt_defaults;
  if (s->projector().empty()) s->set_projector("linear");
  if (!s->has_projector_hidden()) s->set_projector_hidden(0);
  if (!s->has_image_tokens()) s->set_image_tokens(1);
  if (s->optimizer().empty()) s->set_optimizer(opt_defaults.type);
  if (!s->has_lr()) s->set_lr(opt_defaults.lr);
  if (!s->has_weight_decay()) s->set_weight_decay(opt_defaults.weight_decay);
  if (s->schedule().empty()) s->set_schedule("constant");
  if (!s->has_warmup_ratio()) s->set_warmup_ratio(0.03);
  if (!s->has_batch_size()) s->set_batch_size(1);
  if (!s->has_grad_accum()) s->set_grad_accum(1);
  if (!s->has_epochs()) s->set_epochs(1);
  if (!s->has_max_steps()) s->set_max_steps(-1);
  if (!s->has_train_digits()) s->set_train_digits(1000);
  if (!s->has_seed()) s->set_seed(0);
  if (s->prompt_style().empty()) s->set_prompt_style("experiment");
  if (!s->has_world_size()) s->set_world_size(1);
  if (!s->has_min_world_size()) s->set_min_world_size(s->world_size());
  if (!s->has_checkpoint_every_steps()) s->set_checkpoint_every_steps(0);
  if (!s->has_max_restarts()) s->set_max_restarts(3);
  if (!s->has_keep_last()) s->set_keep_last(JobLimits::kDefaultKeepLast);
  if (!s->has_keep_best()) s->set_keep_best(0);
}

absl::Status CheckTrainBounds(const v1::TrainSpec& s) {
  using L = JobLimits;
  LM_RETURN_IF_ERROR(CheckText("train.model", s.model(), L::kMaxModelBytes));
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"train.projector", &s.projector()},
        {"train.optimizer", &s.optimizer()},
        {"train.schedule", &s.schedule()},
        {"train.prompt_style", &s.prompt_style()}}) {
    LM_RETURN_IF_ERROR(CheckText(field, *value, 32));
  }
  LM_RETURN_IF_ERROR(CheckRange("train.batch_size", s.batch_size(), 1, L::kMaxBatch));
  LM_RETURN_IF_ERROR(CheckRange("train.grad_accum", s.grad_accum(), 1, L::kMaxGradAccum));
  LM_RETURN_IF_ERROR(CheckRange("train.world_size", s.world_size(), 1, L::kMaxWorldSize));
  LM_RETURN_IF_ERROR(CheckRange("train.min_world_size", s.min_world_size(), 1, s.world_size()));
  LM_RETURN_IF_ERROR(CheckRange("train.epochs", s.epochs(), 1, L::kMaxEpochs));
  LM_RETURN_IF_ERROR(CheckRange("train.image_tokens", s.image_tokens(), 1, L::kMaxImageTokens));
  LM_RETURN_IF_ERROR(
      CheckRange("train.projector_hidden", s.projector_hidden(), 0, L::kMaxProjectorHidden));
  LM_RETURN_IF_ERROR(AllOrRange("train.train_digits", s.train_digits(), L::kMaxDigits));
  LM_RETURN_IF_ERROR(AllOrRange("train.max_steps", s.max_steps(), L::kMaxSteps));
  LM_RETURN_IF_ERROR(
      CheckRange("train.checkpoint_every_steps", s.checkpoint_every_steps(), 0, L::kMaxSteps));
  LM_RETURN_IF_ERROR(CheckRange("train.max_restarts", s.max_restarts(), 0, L::kMaxRestarts));
  LM_RETURN_IF_ERROR(CheckRange("train.keep_last", s.keep_last(), 1, L::kMaxKeepCheckpoints));
  LM_RETURN_IF_ERROR(CheckRange("train.keep_best", s.keep_best(), 0, L::kMaxKeepCheckpoints));
  if (!s.init_from().empty())
    LM_RETURN_IF_ERROR(CheckCheckpointRef("train.init_from", s.init_from()));
  LM_RETURN_IF_ERROR(CheckRange("train.lr", s.lr(), 0.0, L::kMaxLr));
  LM_RETURN_IF_ERROR(CheckRange("train.weight_decay", s.weight_decay(), 0.0, L::kMaxWeightDecay));
  LM_RETURN_IF_ERROR(CheckRange("train.warmup_ratio", s.warmup_ratio(), 0.0, 1.0));
  LM_RETURN_IF_ERROR(CheckPhrasings("train.questions", s.questions()));
  LM_RETURN_IF_ERROR(CheckPhrasings("train.answer_templates", s.answer_templates()));
  return GlobalBatch(s, s.world_size()).status();
}

}  // namespace

absl::Status ResolveTrainSpec(v1::TrainSpec* s) {
  FillTrainDefaults(s);
  LM_RETURN_IF_ERROR(CheckTrainBounds(*s));
  auto type = ParseProjectorType(s->projector());
  if (!type.ok()) return Prefixed("train.projector: ", type.status());
  if (*type == ProjectorType::kLinear && s->projector_hidden() != 0) {
    return absl::InvalidArgumentError(
        "train.projector_hidden applies to mlp2x_gelu and conv_mlp, not linear");
  }
  LM_RETURN_IF_ERROR(Prefixed("train: ", OptimizerFromSpec(*s).Validate()));
  LM_RETURN_IF_ERROR(Prefixed("train: ", ScheduleFromSpec(*s).Validate()));
  LM_RETURN_IF_ERROR(Prefixed("train: ", AugmentFromSpec(*s).Validate()));
  auto prompt = PromptFromSpec(*s);
  if (!prompt.ok()) return prompt.status();
  return absl::OkStatus();
}

absl::Status ResolveEvalSpec(v1::EvalSpec* s) {
  using L = JobLimits;
  if (s->checkpoint().empty()) {
    return absl::InvalidArgumentError(
        "eval.checkpoint is empty (a checkpoint id or a training job id)");
  }
  if (s->questions().empty()) {
    for (const std::string& q : DefaultEvalQuestions()) s->add_questions(q);
  }
  if (!s->has_eval_digits()) s->set_eval_digits(1000);
  if (!s->has_batch_size()) s->set_batch_size(100);
  if (!s->has_max_new_tokens()) s->set_max_new_tokens(20);
  if (!s->has_workers()) s->set_workers(0);
  if (s->prompt_style().empty()) s->set_prompt_style("experiment");
  if (!s->has_max_restarts()) s->set_max_restarts(3);
  LM_RETURN_IF_ERROR(CheckCheckpointRef("eval.checkpoint", s->checkpoint()));
  LM_RETURN_IF_ERROR(CheckText("eval.model", s->model(), L::kMaxModelBytes));
  LM_RETURN_IF_ERROR(CheckText("eval.prompt_style", s->prompt_style(), 32));
  LM_RETURN_IF_ERROR(AllOrRange("eval.eval_digits", s->eval_digits(), L::kMaxDigits));
  LM_RETURN_IF_ERROR(CheckRange("eval.batch_size", s->batch_size(), 1, L::kMaxEvalBatch));
  LM_RETURN_IF_ERROR(CheckRange("eval.max_new_tokens", s->max_new_tokens(), 1, L::kMaxNewTokens));
  LM_RETURN_IF_ERROR(CheckRange("eval.workers", s->workers(), 0, L::kMaxWorldSize));
  LM_RETURN_IF_ERROR(CheckRange("eval.max_restarts", s->max_restarts(), 0, L::kMaxRestarts));
  LM_RETURN_IF_ERROR(CheckPhrasings("eval.questions", s->questions()));
  auto prompt = PromptFromSpec(*s, 1);
  if (!prompt.ok()) return prompt.status();
  return absl::OkStatus();
}

absl::Status CheckCheckpointRef(absl::string_view field, absl::string_view ref) {
  // "<job id>" or "<job id>/step-<N>": ids joined by one '/'.
  const size_t slash = ref.find('/');
  if (slash == absl::string_view::npos) return CheckId(field, ref);
  LM_RETURN_IF_ERROR(CheckId(field, ref.substr(0, slash)));
  return CheckId(field, ref.substr(slash + 1));
}

ProjectorConfig ProjectorFromSpec(const v1::TrainSpec& s) {
  ProjectorConfig c;
  auto type = ParseProjectorType(s.projector());
  if (type.ok()) c.type = *type;
  c.hidden_dim = s.projector_hidden();
  c.image_tokens = s.image_tokens();
  return c;
}

OptimizerConfig OptimizerFromSpec(const v1::TrainSpec& s) {
  OptimizerConfig c;
  c.type = s.optimizer();
  c.lr = s.lr();
  c.weight_decay = s.weight_decay();
  return c;
}

ScheduleConfig ScheduleFromSpec(const v1::TrainSpec& s) {
  ScheduleConfig c;
  c.type = s.schedule();
  if (c.type == "cosine") c.warmup_ratio = s.warmup_ratio();
  return c;
}

AugmentConfig AugmentFromSpec(const v1::TrainSpec& s) {
  AugmentConfig c;
  c.shift_px = s.augment_shift();
  c.rotate_deg = s.augment_rotate();
  c.scale = s.augment_scale();
  return c;
}

namespace {

absl::StatusOr<PromptConfig> MakePrompt(const std::string& style, const std::string& field,
                                        std::vector<std::string> questions,
                                        std::vector<std::string> answers, int64_t image_tokens) {
  PromptConfig c;
  auto parsed = ParsePromptStyle(style);
  if (!parsed.ok()) return Prefixed((field + ".prompt_style: ").c_str(), parsed.status());
  c.style = *parsed;
  if (!questions.empty()) c.questions = std::move(questions);
  if (!answers.empty()) c.answer_templates = std::move(answers);
  c.image_tokens = image_tokens;
  LM_RETURN_IF_ERROR(Prefixed((field + ": ").c_str(), c.Validate()));
  return c;
}

}  // namespace

absl::StatusOr<PromptConfig> PromptFromSpec(const v1::TrainSpec& s) {
  return MakePrompt(s.prompt_style(), "train", {s.questions().begin(), s.questions().end()},
                    {s.answer_templates().begin(), s.answer_templates().end()}, s.image_tokens());
}

absl::StatusOr<PromptConfig> PromptFromSpec(const v1::EvalSpec& s, int64_t image_tokens) {
  return MakePrompt(s.prompt_style(), "eval", {s.questions().begin(), s.questions().end()}, {},
                    image_tokens);
}

}  // namespace llava
