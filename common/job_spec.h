// Job specs as they travel (protos TrainSpec/EvalSpec): defaults filled in and every
// field validated in one place, so that the coordinator refuses a bad job at submission
// with the field's name, and a worker turns a resolved spec into the same configs that
// `llava-mnist train` builds from flags. Pure functions; thread-safe.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/augment_config.h"
#include "common/optimizer_config.h"
#include "common/projector_config.h"
#include "common/prompt_config.h"
#include "protos/llava.pb.h"

namespace llava {

// The bounds of a job's fields (quoted in protos/llava.proto): generous for real use,
// small enough that no product of them overflows and no plan or buffer sized by them
// exhausts the coordinator.
struct JobLimits {
  static constexpr int64_t kMaxBatch = 65536;
  static constexpr int64_t kMaxGradAccum = 4096;
  static constexpr int64_t kMaxWorldSize = 1024;
  static constexpr int64_t kMaxGlobalBatch = int64_t{1} << 20;
  static constexpr int64_t kMaxEpochs = 10000;
  static constexpr int64_t kMaxSteps = 1000000000;
  static constexpr int64_t kMaxDigits = 1000000000;
  static constexpr int64_t kMaxImageTokens = 64;
  static constexpr int64_t kMaxProjectorHidden = 65536;
  static constexpr int64_t kMaxRestarts = 100;
  static constexpr double kMaxLr = 10.0;
  static constexpr double kMaxWeightDecay = 10.0;
  static constexpr int64_t kMaxPhrasings = 64;
  static constexpr size_t kMaxPhrasingBytes = 512;
  static constexpr size_t kMaxModelBytes = 1024;
  static constexpr int64_t kMaxEvalBatch = 100000;
  static constexpr int64_t kMaxNewTokens = 1024;
  static constexpr int64_t kMaxKeepCheckpoints = 100;
  static constexpr int64_t kDefaultKeepLast = 3;
};

// Fills every unset field with its default and validates; INVALID_ARGUMENT names the
// field ("train.batch_size must be in [1, 65536], got 0"). The coordinator sets
// keep_last to its own default first when the client left it unset.
absl::Status ResolveTrainSpec(v1::TrainSpec* spec);
absl::Status ResolveEvalSpec(v1::EvalSpec* spec);
// batch_size x grad_accum x world_size of a resolved spec with `world_size` ranks, or
// INVALID_ARGUMENT when it is over JobLimits::kMaxGlobalBatch (or overflows).
absl::StatusOr<int64_t> GlobalBatch(const v1::TrainSpec& spec, int64_t world_size);

// A checkpoint reference as clients give it: a job id, or "<job id>/step-<N>".
absl::Status CheckCheckpointRef(absl::string_view field, absl::string_view ref);

// From a resolved spec. The projector's output_dim is the model's, set by the caller.
ProjectorConfig ProjectorFromSpec(const v1::TrainSpec& spec);
OptimizerConfig OptimizerFromSpec(const v1::TrainSpec& spec);
ScheduleConfig ScheduleFromSpec(const v1::TrainSpec& spec);
AugmentConfig AugmentFromSpec(const v1::TrainSpec& spec);
absl::StatusOr<PromptConfig> PromptFromSpec(const v1::TrainSpec& spec);
absl::StatusOr<PromptConfig> PromptFromSpec(const v1::EvalSpec& spec, int64_t image_tokens);

// Whether two refs name the same task (job, attempt, rank).
bool SameTask(const v1::TaskRef& a, const v1::TaskRef& b);
// SUCCEEDED, FAILED or CANCELLED: the job will not change again.
bool IsTerminal(v1::JobState state);

// The questions an eval asks when none are given.
std::vector<std::string> DefaultEvalQuestions();

}  // namespace llava
