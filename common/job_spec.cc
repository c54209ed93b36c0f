#include "common/job_spec.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace llava {
namespace {

absl::Status Positive(const char* field, int64_t v) {
  if (v <= 0) return absl::InvalidArgumentError(absl::StrCat(field, " must be > 0, got ", v));
  return absl::OkStatus();
}

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

absl::Status ResolveTrainSpec(v1::TrainSpec* s) {
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
  if (!s->has_checkpoint_every_steps()) s->set_checkpoint_every_steps(0);
  if (!s->has_max_restarts()) s->set_max_restarts(3);

  LM_RETURN_IF_ERROR(Positive("train.batch_size", s->batch_size()));
  LM_RETURN_IF_ERROR(Positive("train.grad_accum", s->grad_accum()));
  LM_RETURN_IF_ERROR(Positive("train.epochs", s->epochs()));
  LM_RETURN_IF_ERROR(Positive("train.world_size", s->world_size()));
  LM_RETURN_IF_ERROR(Positive("train.image_tokens", s->image_tokens()));
  if (s->train_digits() == 0 || s->train_digits() < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.train_digits must be > 0 or -1 (all), got ", s->train_digits()));
  }
  if (s->max_steps() < -1 || s->max_steps() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.max_steps must be > 0 or -1, got ", s->max_steps()));
  }
  if (s->projector_hidden() < 0) {
    return absl::InvalidArgumentError("train.projector_hidden must be >= 0");
  }
  if (s->checkpoint_every_steps() < 0) {
    return absl::InvalidArgumentError("train.checkpoint_every_steps must be >= 0");
  }
  if (s->max_restarts() < 0) return absl::InvalidArgumentError("train.max_restarts must be >= 0");
  auto type = ParseProjectorType(s->projector());
  if (!type.ok()) return Prefixed("train.projector: ", type.status());
  if (*type == ProjectorType::kLinear && s->projector_hidden() != 0) {
    return absl::InvalidArgumentError("train.projector_hidden applies to mlp2x_gelu, not linear");
  }
  LM_RETURN_IF_ERROR(Prefixed("train: ", OptimizerFromSpec(*s).Validate()));
  LM_RETURN_IF_ERROR(Prefixed("train: ", ScheduleFromSpec(*s).Validate()));
  auto prompt = PromptFromSpec(*s);
  if (!prompt.ok()) return prompt.status();
  return absl::OkStatus();
}

absl::Status ResolveEvalSpec(v1::EvalSpec* s) {
  if (s->checkpoint().empty()) {
    return absl::InvalidArgumentError("eval.checkpoint is empty (a checkpoint id or a training job id)");
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
  if (s->eval_digits() == 0 || s->eval_digits() < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval.eval_digits must be > 0 or -1 (all), got ", s->eval_digits()));
  }
  LM_RETURN_IF_ERROR(Positive("eval.batch_size", s->batch_size()));
  LM_RETURN_IF_ERROR(Positive("eval.max_new_tokens", s->max_new_tokens()));
  if (s->workers() < 0) return absl::InvalidArgumentError("eval.workers must be >= 0");
  if (s->max_restarts() < 0) return absl::InvalidArgumentError("eval.max_restarts must be >= 0");
  auto prompt = PromptFromSpec(*s, 1);
  if (!prompt.ok()) return prompt.status();
  return absl::OkStatus();
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
                    {s.answer_templates().begin(), s.answer_templates().end()},
                    s.image_tokens());
}

absl::StatusOr<PromptConfig> PromptFromSpec(const v1::EvalSpec& s, int64_t image_tokens) {
  return MakePrompt(s.prompt_style(), "eval", {s.questions().begin(), s.questions().end()}, {},
                    image_tokens);
}

}  // namespace llava
