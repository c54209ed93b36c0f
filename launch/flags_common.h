// Flags shared by every subcommand that loads a model or data. Each default can also
// come from the environment (LLAVA_MODEL, LLAVA_TOKENIZER, LLAVA_DEVICE, LLAVA_DTYPE,
// LLAVA_DATA_DIR, LLAVA_FLOAT32_ATTENTION=false), so that containers configure them
// without a command line.
#pragma once

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "common/llama_weights.h"
#include "launch/flags_shared.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, tokenizer);
ABSL_DECLARE_FLAG(std::string, device);
ABSL_DECLARE_FLAG(std::string, dtype);
ABSL_DECLARE_FLAG(bool, float32_attention);
ABSL_DECLARE_FLAG(std::string, data_dir);

namespace llava {

// --device, --dtype, --float32_attention and --seed as ModelOptions.
absl::StatusOr<ModelOptions> ModelOptionsFromFlags();

}  // namespace llava
