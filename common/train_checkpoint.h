// Training checkpoints: one safetensors file (loadable by Python's safetensors) holding
// the projector ("projector.<param>"), optionally the optimizer state
// ("optimizer.<state>"), and metadata (format, version, projector_config, train_state,
// model), laid out as common/train_checkpoint_format.h says. Threading: free functions
// with no shared state; a TrainCheckpoint is plain data.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/optimizer.h"
#include "common/projector.h"
#include "common/safetensors.h"
#include "common/train_checkpoint_format.h"

namespace llava {

struct TrainCheckpoint {
  ProjectorConfig projector_config;
  // In the projector's parameter order, names without the "projector." prefix, float32
  // on the CPU.
  std::vector<NamedTensor> projector_tensors;
  // Names without the "optimizer." prefix, as stored, on the CPU; empty for a
  // projector-only checkpoint.
  std::vector<NamedTensor> optimizer_state;
  std::string train_state_json;  // opaque to this layer: the trainer's own record
  std::string model_spec;        // the LLM the projector was trained against
  std::string source;            // the path (or the name given to Parse), for errors
};

// Writes atomically (temp file, fsync, rename): a failed save leaves the old file whole.
// `optimizer` may be null for a projector-only checkpoint.
absl::Status SaveTrainCheckpoint(const std::string& path, Projector& projector,
                                 const Optimizer* optimizer, const std::string& train_state_json,
                                 const std::string& model_spec);
// The same file's bytes (checkpoints travel over gRPC).
absl::StatusOr<std::string> SerializeTrainCheckpoint(Projector& projector,
                                                     const Optimizer* optimizer,
                                                     const std::string& train_state_json,
                                                     const std::string& model_spec);

// Errors name the file and the metadata field or tensor at fault. "format", "version"
// and "projector_config" are required; "train_state" and "model" read as empty when
// absent. Projector tensors must be exactly the config's (any float dtype, converted).
absl::StatusOr<TrainCheckpoint> LoadTrainCheckpoint(const std::string& path);
absl::StatusOr<TrainCheckpoint> ParseTrainCheckpoint(std::string bytes, const std::string& source);

// Builds the projector of the checkpoint's config and copies its weights in, on `device`.
absl::StatusOr<Projector> RestoreProjector(const TrainCheckpoint& checkpoint, at::Device device);
// Loads the checkpoint's optimizer state into `optimizer` (made over the restored
// projector's parameters); FailedPrecondition for a projector-only checkpoint.
absl::Status RestoreOptimizer(const TrainCheckpoint& checkpoint, Optimizer& optimizer);

// The projector's output must be the LLM's embedding width; the error names `source`
// and both numbers.
absl::Status CheckProjectorFitsModel(const ProjectorConfig& config, int64_t hidden_size,
                                     const std::string& source);

// CheckProjectorFitsModel (the error naming checkpoint.source), then RestoreProjector:
// the projector that feeds a model of `hidden_size`, for eval and inference.
absl::StatusOr<Projector> RestoreProjectorForModel(const TrainCheckpoint& checkpoint,
                                                   int64_t hidden_size, at::Device device);

}  // namespace llava
