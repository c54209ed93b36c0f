#include "common/projector_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace llava {
namespace {

using json = nlohmann::json;

constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxImageTokens = 1024;

constexpr const char* kKnownFields[] = {"type",         "input_dim",  "output_dim", "hidden_dim",
                                        "image_tokens", "input_mean", "input_std"};

absl::Status FieldError(const std::string& source, const std::string& field,
                        const std::string& problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": projector config field '", field, "' ", problem));
}

absl::Status ReadInt(const json& j, const std::string& source, const char* field, bool required,
                     int64_t* out) {
  auto it = j.find(field);
  if (it == j.end()) return required ? FieldError(source, field, "is missing") : absl::OkStatus();
  if (!it->is_number_integer()) return FieldError(source, field, "must be an integer");
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const json& j, const std::string& source, const char* field, double* out) {
  auto it = j.find(field);
  if (it == j.end()) return absl::OkStatus();
  if (!it->is_number()) return FieldError(source, field, "must be a number");
  *out = it->get<double>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ProjectorType> ParseProjectorType(const std::string& name) {
  if (name == "linear") return ProjectorType::kLinear;
  if (name == "mlp2x_gelu") return ProjectorType::kMlp2xGelu;
  if (name == "conv_mlp") return ProjectorType::kConvMlp;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown projector type '", name, "' (known: linear, mlp2x_gelu, conv_mlp)"));
}

const char* ProjectorTypeName(ProjectorType type) {
  switch (type) {
    case ProjectorType::kLinear:
      return "linear";
    case ProjectorType::kMlp2xGelu:
      return "mlp2x_gelu";
    case ProjectorType::kConvMlp:
      return "conv_mlp";
  }
  return "unknown";
}

absl::Status ProjectorConfig::Validate() const {
  auto positive = [](const char* name, int64_t v) {
    return CheckPositive(absl::StrCat("projector ", name), v);
  };
  LM_RETURN_IF_ERROR(positive("input_dim", input_dim));
  LM_RETURN_IF_ERROR(positive("output_dim", output_dim));
  LM_RETURN_IF_ERROR(positive("image_tokens", image_tokens));
  if (hidden_dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("projector hidden_dim must be >= 0, got ", hidden_dim));
  }
  if (type == ProjectorType::kLinear && hidden_dim != 0) {
    return absl::InvalidArgumentError(absl::StrCat("projector hidden_dim (", hidden_dim,
                                                   ") only applies to mlp2x_gelu, not linear"));
  }
  if (type == ProjectorType::kConvMlp && input_dim <= kMaxDim) {
    const int64_t side = ImageSide();
    if (side * side != input_dim || side % 4 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "projector conv_mlp needs a square image whose side is divisible by 4 (two 2x2 "
          "pools), got input_dim ",
          input_dim));
    }
  }
  if (!std::isfinite(input_mean)) {
    return absl::InvalidArgumentError("projector input_mean must be finite");
  }
  if (!std::isfinite(input_std) || input_std <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("projector input_std must be finite and > 0, got ", input_std));
  }
  // Bounds far above any real model, so that parameter counts cannot overflow int64.
  if (input_dim > kMaxDim || output_dim > kMaxDim || hidden_dim > kMaxDim ||
      image_tokens > kMaxImageTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("projector dimensions are implausibly large (dims <= ", kMaxDim,
                     ", image_tokens <= ", kMaxImageTokens, ")"));
  }
  return absl::OkStatus();
}

int64_t ProjectorConfig::ImageSide() const {
  if (type != ProjectorType::kConvMlp) return 0;
  int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(input_dim))));
  while (side > 0 && side * side > input_dim) --side;
  while ((side + 1) * (side + 1) <= input_dim) ++side;
  return side;
}

int64_t ProjectorConfig::EffectiveHiddenDim() const {
  if (type == ProjectorType::kLinear) return 0;
  return hidden_dim > 0 ? hidden_dim : output_dim;
}

std::string ProjectorConfig::ToJson() const {
  json j = {{"type", ProjectorTypeName(type)}, {"input_dim", input_dim},
            {"output_dim", output_dim},        {"hidden_dim", hidden_dim},
            {"image_tokens", image_tokens},    {"input_mean", input_mean},
            {"input_std", input_std}};
  return j.dump();
}

absl::StatusOr<ProjectorConfig> ProjectorConfig::FromJson(const std::string& json_text,
                                                          const std::string& source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": projector config is not valid JSON"));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": projector config must be a JSON object"));
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* f : kKnownFields) known = known || it.key() == f;
    if (!known) return FieldError(source, it.key(), "is not a projector config field");
  }
  ProjectorConfig c;
  auto type = j.find("type");
  if (type == j.end()) return FieldError(source, "type", "is missing");
  if (!type->is_string()) return FieldError(source, "type", "must be a string");
  auto parsed = ParseProjectorType(type->get<std::string>());
  if (!parsed.ok()) return FieldError(source, "type", std::string(parsed.status().message()));
  c.type = *parsed;
  LM_RETURN_IF_ERROR(ReadInt(j, source, "input_dim", false, &c.input_dim));
  LM_RETURN_IF_ERROR(ReadInt(j, source, "output_dim", true, &c.output_dim));
  LM_RETURN_IF_ERROR(ReadInt(j, source, "hidden_dim", false, &c.hidden_dim));
  LM_RETURN_IF_ERROR(ReadInt(j, source, "image_tokens", false, &c.image_tokens));
  LM_RETURN_IF_ERROR(ReadDouble(j, source, "input_mean", &c.input_mean));
  LM_RETURN_IF_ERROR(ReadDouble(j, source, "input_std", &c.input_std));
  absl::Status valid = c.Validate();
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", valid.message()));
  }
  return c;
}

bool operator==(const ProjectorConfig& a, const ProjectorConfig& b) {
  return a.type == b.type && a.input_dim == b.input_dim && a.output_dim == b.output_dim &&
         a.hidden_dim == b.hidden_dim && a.image_tokens == b.image_tokens &&
         a.input_mean == b.input_mean && a.input_std == b.input_std;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ProjectorParameterShapes(
    const ProjectorConfig& config) {
  const int64_t out = config.output_dim * config.image_tokens;
  if (config.type == ProjectorType::kLinear) {
    return {{"fc1.weight", {out, config.input_dim}}, {"fc1.bias", {out}}};
  }
  const int64_t hidden = config.EffectiveHiddenDim();
  if (config.type == ProjectorType::kConvMlp) {
    const int64_t pooled = config.ImageSide() / 4;
    return {{"conv1.weight", {kConvChannels1, 1, 3, 3}},
            {"conv1.bias", {kConvChannels1}},
            {"conv2.weight", {kConvChannels2, kConvChannels1, 3, 3}},
            {"conv2.bias", {kConvChannels2}},
            {"fc1.weight", {hidden, kConvChannels2 * pooled * pooled}},
            {"fc1.bias", {hidden}},
            {"fc2.weight", {out, hidden}},
            {"fc2.bias", {out}}};
  }
  return {{"fc1.weight", {hidden, config.input_dim}},
          {"fc1.bias", {hidden}},
          {"fc2.weight", {out, hidden}},
          {"fc2.bias", {out}}};
}

absl::Status CheckProjectorCompatible(const ProjectorConfig& from, const ProjectorConfig& to,
                                      const std::string& source) {
  if (from.type == to.type && ProjectorParameterShapes(from) == ProjectorParameterShapes(to) &&
      from.input_mean == to.input_mean && from.input_std == to.input_std) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": its projector (", from.ToJson(), ") does not fit the requested one (",
                   to.ToJson(), "): kind, shapes and input normalization must match"));
}

}  // namespace llava
