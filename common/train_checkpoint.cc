#include "common/train_checkpoint.h"

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace llava {
namespace {

constexpr const char* kProjectorPrefix = kCheckpointProjectorPrefix;
constexpr const char* kOptimizerPrefix = kCheckpointOptimizerPrefix;

std::string ShapeString(at::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ", "), "]");
}

// The file's tensors and metadata.
absl::StatusOr<std::string> Serialize(Projector& projector, const Optimizer* optimizer,
                                      const std::string& train_state_json,
                                      const std::string& model_spec) {
  std::vector<NamedTensor> tensors;
  for (auto& [name, param] : projector->NamedParameters()) {
    tensors.push_back({kProjectorPrefix + name, param.detach()});
  }
  if (optimizer != nullptr) {
    for (NamedTensor& t : optimizer->StateTensors()) {
      tensors.push_back({kOptimizerPrefix + t.name, std::move(t.tensor)});
    }
  }
  const std::map<std::string, std::string> metadata = {
      {"format", kTrainCheckpointFormat},
      {"version", kTrainCheckpointVersion},
      {"projector_config", projector->config().ToJson()},
      {"train_state", train_state_json},
      {"model", model_spec},
  };
  return SerializeSafetensors(tensors, metadata);
}

// The checked layout, then the tensors: optimizer state as stored, the projector's in its
// parameter order as float32 (it trains in float32 whatever was stored).
absl::Status LoadTensors(const SafetensorsFile& file, TrainCheckpoint* out) {
  for (const StTensorInfo& info : file.tensors()) {
    if (!absl::StartsWith(info.name, kOptimizerPrefix)) continue;
    LM_ASSIGN_OR_RETURN(at::Tensor t, file.Load(info.name));
    out->optimizer_state.push_back(
        {info.name.substr(std::string(kOptimizerPrefix).size()), std::move(t)});
  }
  for (const auto& [name, shape] : ProjectorParameterShapes(out->projector_config)) {
    LoadOptions options;
    options.dtype = at::kFloat;
    LM_ASSIGN_OR_RETURN(at::Tensor t, file.Load(kProjectorPrefix + name, options));
    out->projector_tensors.push_back({name, std::move(t)});
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainCheckpoint> ParseFile(const SafetensorsFile& file) {
  TrainCheckpoint out;
  out.source = file.path();
  LM_ASSIGN_OR_RETURN(TrainCheckpointLayout layout,
                      CheckTrainCheckpoint(file.header(), file.path()));
  out.projector_config = std::move(layout.projector_config);
  out.train_state_json = std::move(layout.train_state_json);
  out.model_spec = std::move(layout.model_spec);
  LM_RETURN_IF_ERROR(LoadTensors(file, &out));
  return out;
}

}  // namespace

absl::Status SaveTrainCheckpoint(const std::string& path, Projector& projector,
                                 const Optimizer* optimizer, const std::string& train_state_json,
                                 const std::string& model_spec) {
  auto bytes = Serialize(projector, optimizer, train_state_json, model_spec);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("saving checkpoint ", path, ": ", bytes.status().message()));
  }
  return WriteFileAtomic(path, *bytes);
}

absl::StatusOr<std::string> SerializeTrainCheckpoint(Projector& projector,
                                                     const Optimizer* optimizer,
                                                     const std::string& train_state_json,
                                                     const std::string& model_spec) {
  return Serialize(projector, optimizer, train_state_json, model_spec);
}

absl::StatusOr<TrainCheckpoint> LoadTrainCheckpoint(const std::string& path) {
  LM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  return ParseFile(*file);
}

absl::StatusOr<TrainCheckpoint> ParseTrainCheckpoint(std::string bytes, const std::string& source) {
  LM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                      SafetensorsFile::FromBytes(std::move(bytes), source));
  return ParseFile(*file);
}

absl::StatusOr<Projector> RestoreProjector(const TrainCheckpoint& checkpoint, at::Device device) {
  const std::string& source = checkpoint.source;
  auto made = MakeProjector(checkpoint.projector_config, /*seed=*/0);
  if (!made.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", made.status().message()));
  }
  Projector projector = *std::move(made);
  auto params = projector->NamedParameters();
  // A TrainCheckpoint may be assembled by hand, so check it again.
  if (checkpoint.projector_tensors.size() != params.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", checkpoint.projector_tensors.size(),
                     " projector tensors, the config needs ", params.size()));
  }
  try {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) {
      const NamedTensor& stored = checkpoint.projector_tensors[i];
      at::Tensor& param = params[i].second;
      if (stored.name != params[i].first) {
        return CheckpointTensorError(absl::StatusCode::kInvalidArgument, source, stored.name,
                                     absl::StrCat("found where '", params[i].first, "' belongs"));
      }
      if (!stored.tensor.defined() || stored.tensor.sizes() != param.sizes()) {
        return CheckpointTensorError(
            absl::StatusCode::kInvalidArgument, source, stored.name,
            absl::StrCat("has shape ",
                         stored.tensor.defined() ? ShapeString(stored.tensor.sizes()) : "none",
                         ", expected ", ShapeString(param.sizes())));
      }
      param.copy_(stored.tensor);
    }
    projector->to(device);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": cannot restore the projector on ",
                                                   device.str(), ": ", e.what_without_backtrace()));
  }
  return projector;
}

absl::Status RestoreOptimizer(const TrainCheckpoint& checkpoint, Optimizer& optimizer) {
  if (checkpoint.optimizer_state.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        checkpoint.source, ": projector-only checkpoint, holds no optimizer state to resume"));
  }
  std::map<std::string, at::Tensor> state;
  for (const NamedTensor& t : checkpoint.optimizer_state) state[t.name] = t.tensor;
  absl::Status loaded = optimizer.LoadState(state);
  if (!loaded.ok()) {
    return absl::Status(loaded.code(), absl::StrCat(checkpoint.source, ": ", loaded.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckProjectorFitsModel(const ProjectorConfig& config, int64_t hidden_size,
                                     const std::string& source) {
  if (config.output_dim != hidden_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": projector output_dim ", config.output_dim,
                     " does not match the model's hidden_size ", hidden_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<Projector> RestoreProjectorForModel(const TrainCheckpoint& checkpoint,
                                                   int64_t hidden_size, at::Device device) {
  LM_RETURN_IF_ERROR(
      CheckProjectorFitsModel(checkpoint.projector_config, hidden_size, checkpoint.source));
  return RestoreProjector(checkpoint, device);
}

}  // namespace llava
