// Job specs as they travel (protos TrainSpec/EvalSpec): defaults filled in and every
// field validated in one place, so that the coordinator refuses a bad job at submission
// with the field's name, and a worker turns a resolved spec into the same configs that
// `llava-mnist train` builds from flags. Pure functions; thread-safe.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/optimizer.h"
#include "common/projector.h"
#include "common/prompt.h"
#include "protos/llava.pb.h"

namespace llava {

// Fills every unset field with its default and validates; INVALID_ARGUMENT names the
// field ("train.batch_size must be > 0, got 0").
absl::Status ResolveTrainSpec(v1::TrainSpec* spec);
absl::Status ResolveEvalSpec(v1::EvalSpec* spec);

// From a resolved spec. The projector's output_dim is the model's, set by the caller.
ProjectorConfig ProjectorFromSpec(const v1::TrainSpec& spec);
OptimizerConfig OptimizerFromSpec(const v1::TrainSpec& spec);
ScheduleConfig ScheduleFromSpec(const v1::TrainSpec& spec);
absl::StatusOr<PromptConfig> PromptFromSpec(const v1::TrainSpec& spec);
absl::StatusOr<PromptConfig> PromptFromSpec(const v1::EvalSpec& spec, int64_t image_tokens);

// Whether two refs name the same task (job, attempt, rank).
bool SameTask(const v1::TaskRef& a, const v1::TaskRef& b);
// SUCCEEDED, FAILED or CANCELLED: the job will not change again.
bool IsTerminal(v1::JobState state);

// The questions an eval asks when none are given.
std::vector<std::string> DefaultEvalQuestions();

}  // namespace llava
