#include "launch/recipe.h"

#include <google/protobuf/util/json_util.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "launch/cluster_flags.h"
#include "worker/train_spec.h"

ABSL_FLAG(std::string, recipe, "",
          "train, launch: a recipe file (recipes/*.json: TrainSpec fields as JSON); the flags "
          "given override its fields");

namespace llava {

absl::StatusOr<std::string> RecipeJsonFromFlags(const std::string& built_in) {
  const std::string path = absl::GetFlag(FLAGS_recipe);
  if (path.empty()) return built_in;
  auto json = ReadFile(path);
  if (!json.ok())
    return absl::InvalidArgumentError(absl::StrCat("--recipe: ", json.status().message()));
  v1::TrainSpec parsed;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  if (auto s = google::protobuf::util::JsonStringToMessage(*json, &parsed, options); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a recipe (TrainSpec fields as JSON): ", s.message().as_string()));
  }
  return *json;
}

absl::StatusOr<v1::TrainSpec> TrainRunSpecFromFlags() {
  LM_ASSIGN_OR_RETURN(std::string base, RecipeJsonFromFlags(""));
  LM_ASSIGN_OR_RETURN(v1::TrainSpec spec, TrainSpecFromFlags(base));
  LM_RETURN_IF_ERROR(ResolveTrainSpec(&spec));
  return spec;
}

absl::StatusOr<TrainConfig> OneProcessTrainConfig(const v1::TrainSpec& spec,
                                                  const std::string& model_spec,
                                                  int64_t hidden_size) {
  LM_ASSIGN_OR_RETURN(TrainConfig c, TrainConfigFromSpec(spec, model_spec, hidden_size));
  c.grad_accum *= c.world_size;
  c.world_size = 1;
  LM_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace llava
