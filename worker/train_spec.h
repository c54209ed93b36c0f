// A resolved TrainSpec (common/job_spec.h) as the trainer's TrainConfig: the one mapping
// that a distributed worker and `llava-mnist train --recipe` share, so that a recipe file
// trains the same way in either. Pure; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "protos/llava.pb.h"
#include "worker/trainer.h"

namespace llava {

// `spec` must be resolved (ResolveTrainSpec). world_size is the spec's: it sets the global
// batch. `model_spec` is recorded in checkpoints; `hidden_size` is the LLM's (the
// projector's output).
absl::StatusOr<TrainConfig> TrainConfigFromSpec(const v1::TrainSpec& spec,
                                                const std::string& model_spec, int64_t hidden_size);

}  // namespace llava
