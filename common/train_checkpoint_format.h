// The training checkpoint's file layout without tensors: the metadata fields (format,
// version, projector_config, train_state, model), which tensors a checkpoint holds
// ("projector.<param>" of the config's shapes, "optimizer.<state>"), their validation
// from the safetensors header alone, and the projector-only copy made by byte ranges. What
// the coordinator, which treats checkpoints as bytes, needs; common/train_checkpoint.h
// loads the tensors on top of it. Pure functions; thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/projector_config.h"
#include "common/safetensors_format.h"

namespace llava {

inline constexpr const char* kTrainCheckpointFormat = "llava-mnist-projector";
inline constexpr const char* kTrainCheckpointVersion = "1";
inline constexpr const char* kCheckpointProjectorPrefix = "projector.";
inline constexpr const char* kCheckpointOptimizerPrefix = "optimizer.";

// What a checkpoint's header says.
struct TrainCheckpointLayout {
  ProjectorConfig projector_config;
  std::string train_state_json;
  std::string model_spec;
};

// Errors name `source` and the metadata field or tensor at fault. "format", "version" and
// "projector_config" are required; "train_state" and "model" read as empty when absent.
// Every tensor is a projector parameter of the config's shape (all present, a floating
// dtype) or optimizer state (checked when loaded into an optimizer).
absl::StatusOr<TrainCheckpointLayout> CheckTrainCheckpoint(const SafetensorsHeader& header,
                                                           const std::string& source);

// "<source>: tensor '<tensor>' <problem>".
absl::Status CheckpointTensorError(absl::StatusCode code, const std::string& source,
                                   const std::string& tensor, const std::string& problem);

// The same checkpoint without its optimizer state: the projector's tensors, copied by
// their byte ranges, and the metadata, byte-identical where kept (what eval and inference
// need: a third of the bytes with AdamW's two moments gone). The input is validated as a
// checkpoint first.
absl::StatusOr<std::string> ProjectorOnlyCheckpoint(std::string bytes, const std::string& source);

}  // namespace llava
