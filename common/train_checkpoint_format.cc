#include "common/train_checkpoint_format.h"

#include <map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace llava {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status FieldError(const std::string& source, const std::string& field,
                        const std::string& problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": metadata field '", field, "' ", problem));
}

absl::StatusOr<std::string> RequiredField(const std::map<std::string, std::string>& metadata,
                                          const std::string& source, const std::string& field) {
  auto it = metadata.find(field);
  if (it == metadata.end()) {
    return FieldError(source, field,
                      absl::StrCat("is missing (not a ", kTrainCheckpointFormat, " checkpoint?)"));
  }
  return it->second;
}

std::string OptionalField(const std::map<std::string, std::string>& metadata,
                          const std::string& field) {
  auto it = metadata.find(field);
  return it == metadata.end() ? "" : it->second;
}

absl::Status CheckMetadata(const std::map<std::string, std::string>& metadata,
                           const std::string& source, TrainCheckpointLayout* out) {
  LM_ASSIGN_OR_RETURN(std::string format, RequiredField(metadata, source, "format"));
  if (format != kTrainCheckpointFormat) {
    return FieldError(source, "format",
                      absl::StrCat("is '", format, "', expected '", kTrainCheckpointFormat, "'"));
  }
  LM_ASSIGN_OR_RETURN(std::string version, RequiredField(metadata, source, "version"));
  if (version != kTrainCheckpointVersion) {
    return FieldError(
        source, "version",
        absl::StrCat("is '", version, "'; this build reads version ", kTrainCheckpointVersion));
  }
  LM_ASSIGN_OR_RETURN(std::string config_json, RequiredField(metadata, source, "projector_config"));
  LM_ASSIGN_OR_RETURN(
      out->projector_config,
      ProjectorConfig::FromJson(config_json,
                                absl::StrCat(source, ": metadata field 'projector_config'")));
  out->train_state_json = OptionalField(metadata, "train_state");
  out->model_spec = OptionalField(metadata, "model");
  return absl::OkStatus();
}

absl::Status CheckTensors(const SafetensorsHeader& header, const std::string& source,
                          const ProjectorConfig& config) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (const auto& [name, shape] : ProjectorParameterShapes(config)) {
    expected[kCheckpointProjectorPrefix + name] = shape;
  }
  for (const StTensorInfo& info : header.tensors) {
    if (absl::StartsWith(info.name, kCheckpointOptimizerPrefix)) continue;
    auto it = expected.find(info.name);
    if (it == expected.end()) {
      return CheckpointTensorError(absl::StatusCode::kInvalidArgument, source, info.name,
                                   absl::StrCat("is not part of a ", ProjectorTypeName(config.type),
                                                " projector nor optimizer state"));
    }
    if (info.shape != it->second) {
      return CheckpointTensorError(
          absl::StatusCode::kInvalidArgument, source, info.name,
          absl::StrCat("has shape ", ShapeString(info.shape), ", expected ",
                       ShapeString(it->second), " for projector_config ", config.ToJson()));
    }
    if (!StDtypeIsFloating(info.dtype)) {
      return CheckpointTensorError(
          absl::StatusCode::kInvalidArgument, source, info.name,
          absl::StrCat("has dtype ", StDtypeName(info.dtype), ", expected a floating-point type"));
    }
  }
  for (const auto& param : ProjectorParameterShapes(config)) {
    const std::string stored = kCheckpointProjectorPrefix + param.first;
    if (header.Find(stored) == nullptr) {
      return CheckpointTensorError(absl::StatusCode::kNotFound, source, stored, "is missing");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckpointTensorError(absl::StatusCode code, const std::string& source,
                                   const std::string& tensor, const std::string& problem) {
  return absl::Status(code, absl::StrCat(source, ": tensor '", tensor, "' ", problem));
}

absl::StatusOr<TrainCheckpointLayout> CheckTrainCheckpoint(const SafetensorsHeader& header,
                                                           const std::string& source) {
  TrainCheckpointLayout out;
  LM_RETURN_IF_ERROR(CheckMetadata(header.metadata, source, &out));
  LM_RETURN_IF_ERROR(CheckTensors(header, source, out.projector_config));
  return out;
}

absl::StatusOr<std::string> ProjectorOnlyCheckpoint(std::string bytes, const std::string& source) {
  LM_ASSIGN_OR_RETURN(
      SafetensorsHeader header,
      ParseSafetensorsHeader(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), source));
  LM_RETURN_IF_ERROR(CheckTrainCheckpoint(header, source).status());
  return SelectSafetensors(bytes, header, [](const StTensorInfo& info) {
    return absl::StartsWith(info.name, kCheckpointProjectorPrefix);
  });
}

}  // namespace llava
