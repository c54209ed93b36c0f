// Flags shared by every subcommand that loads a model or data. Each default can also
// come from the environment (LLAVA_MODEL, LLAVA_TOKENIZER, LLAVA_DEVICE, LLAVA_DTYPE,
// LLAVA_WEIGHTS, LLAVA_FP8_TRANSPOSED, LLAVA_FP8_BACKWARD, LLAVA_FP8_FAST_ACCUM=true,
// LLAVA_FP8_FUSE=false, LLAVA_DATA_DIR, LLAVA_FLOAT32_ATTENTION=false), so that
// containers configure them without a command line.
#pragma once

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "common/forward_options.h"
#include "common/llama_weights.h"
#include "launch/flags_shared.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, tokenizer);
ABSL_DECLARE_FLAG(std::string, device);
ABSL_DECLARE_FLAG(std::string, dtype);
ABSL_DECLARE_FLAG(std::string, weights);
ABSL_DECLARE_FLAG(std::string, fp8_backward);
ABSL_DECLARE_FLAG(std::string, fp8_transposed);
ABSL_DECLARE_FLAG(bool, fp8_fuse);
ABSL_DECLARE_FLAG(bool, fp8_fast_accum);
ABSL_DECLARE_FLAG(bool, float32_attention);
ABSL_DECLARE_FLAG(std::string, data_dir);

namespace llava {

// --device, --dtype, --weights, --fp8_transposed, --fp8_fuse and --seed as ModelOptions: how the
// model is loaded.
absl::StatusOr<ModelOptions> ModelOptionsFromFlags();

// --float32_attention, --fp8_backward and --fp8_fast_accum as ForwardOptions (the rest at their
// defaults): how the loaded model computes. A command makes it once, at the top, and passes it
// down.
absl::StatusOr<ForwardOptions> ForwardOptionsFromFlags();

}  // namespace llava
