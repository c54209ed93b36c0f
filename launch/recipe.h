// Recipes: a training run's settings as a file (recipes/*.json: TrainSpec fields in
// protobuf's JSON form, the same as `submit train --job_json`), for `train --recipe` and
// `launch --recipe`; the flags given on the command line override the recipe's fields.
#pragma once

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "protos/llava.pb.h"
#include "worker/trainer.h"

ABSL_DECLARE_FLAG(std::string, recipe);

namespace llava {

// The recipe file's text, checked to be a TrainSpec (unknown fields refused; the error
// names the file); without --recipe, `built_in`.
absl::StatusOr<std::string> RecipeJsonFromFlags(const std::string& built_in);

// What `train` runs: the recipe (without one, every flag's default), --job_json, then the
// flags given, resolved (defaults filled in, validated).
absl::StatusOr<v1::TrainSpec> TrainRunSpecFromFlags();

// One process's TrainConfig for a resolved spec: a spec for several ranks runs the same
// global batch as more forward passes per step (grad_accum x world_size), which is the
// same optimizer step on the same samples.
absl::StatusOr<TrainConfig> OneProcessTrainConfig(const v1::TrainSpec& spec,
                                                  const std::string& model_spec,
                                                  int64_t hidden_size);

}  // namespace llava
