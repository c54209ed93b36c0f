#include "common/projector_export.h"

#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace llava {
namespace {

using json = nlohmann::json;

// Our parameter name -> the format's, for each projector kind.
std::string ExportedName(ExportFormat format, ProjectorType type, const std::string& ours) {
  const bool fc1 = ours.rfind("fc1.", 0) == 0;
  const std::string leaf = ours.substr(4);  // "weight" | "bias"
  if (format == ExportFormat::kHf) {
    return absl::StrCat("multi_modal_projector.", fc1 ? "linear_1." : "linear_2.", leaf);
  }
  if (type == ProjectorType::kLinear) return absl::StrCat("model.mm_projector.", leaf);
  return absl::StrCat("model.mm_projector.", fc1 ? "0." : "2.", leaf);
}

// What every export says about its input and where it came from.
json InputDescription(const TrainCheckpoint& c) {
  const ProjectorConfig& p = c.projector_config;
  return {
      {"input", absl::StrCat(p.input_dim,
                             " raw pixels: one 28x28 MNIST digit, row-major, no vision encoder")},
      {"pixel_scale", 1.0 / 255.0},
      {"image_mean", p.input_mean},
      {"image_std", p.input_std},
      {"normalization",
       "x = (byte / 255 - image_mean) / image_std, per pixel, before the first layer"},
      {"projector_type", ProjectorTypeName(p.type)},
      {"image_tokens", p.image_tokens},
      {"output", absl::StrCat("[", p.image_tokens * p.output_dim, "] reshaped to [", p.image_tokens,
                              ", ", p.output_dim, "]: image_tokens embeddings of the LLM's width")},
      {"llm", c.model_spec},
      {"source_checkpoint", c.source},
      {"projector_config", json::parse(p.ToJson())},
  };
}

absl::Status CheckHfFits(const ProjectorConfig& p) {
  if (p.type != ProjectorType::kMlp2xGelu) return absl::OkStatus();
  // LlavaMultiModalProjector is Linear(vision, text) -> act -> Linear(text, text).
  if (p.image_tokens != 1 || p.EffectiveHiddenDim() != p.output_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--format hf: transformers' LlavaMultiModalProjector is Linear(784, D), GELU, Linear(D, D) "
        "with D the LLM's hidden size; this mlp2x_gelu projector has hidden width ",
        p.EffectiveHiddenDim(), ", image_tokens ", p.image_tokens, " and D ", p.output_dim,
        " (use --format llava, a plain torch.nn.Sequential holds it)"));
  }
  return absl::OkStatus();
}

json HfConfig(const TrainCheckpoint& c) {
  const ProjectorConfig& p = c.projector_config;
  const bool mlp = p.type == ProjectorType::kMlp2xGelu;
  const int64_t out = p.output_dim * p.image_tokens;
  const int64_t heads = out % 128 == 0 ? out / 128 : 1;
  json j = {
      {"architectures", {"LlavaForConditionalGeneration"}},
      {"model_type", "llava"},
      {"projector_hidden_act", "gelu"},
      {"multimodal_projector_bias", true},
      {"vision_feature_layer", -1},
      {"vision_feature_select_strategy", "full"},
      {"image_seq_length", p.image_tokens},
      // No vision tower: one "patch" that is the whole 28x28x1 digit, 784 features.
      {"vision_config",
       {{"model_type", "clip_vision_model"},
        {"hidden_size", p.input_dim},
        {"image_size", 28},
        {"patch_size", 28},
        {"num_channels", 1},
        {"num_attention_heads", 16},
        {"intermediate_size", 4 * p.input_dim}}},
      // Only the LLM's width is known here; the heads are Llama's (head_dim 128) when they fit.
      {"text_config",
       {{"model_type", "llama"},
        {"hidden_size", out},
        {"num_attention_heads", heads},
        {"num_key_value_heads", heads % 4 == 0 ? heads / 4 : heads}}},
      {"llava_mnist", InputDescription(c)},
  };
  if (!mlp) {
    j["llava_mnist"]["note"] =
        "a single linear layer: only multi_modal_projector.linear_1 (no activation, no linear_2); "
        "load it into torch.nn.Linear(vision_config.hidden_size, text_config.hidden_size)";
  }
  return j;
}

json LlavaConfig(const TrainCheckpoint& c) {
  const ProjectorConfig& p = c.projector_config;
  json j = {
      {"mm_projector_type", ProjectorTypeName(p.type)},
      {"mm_hidden_size", p.input_dim},
      {"hidden_size", p.output_dim * p.image_tokens},
      {"mm_vision_tower", nullptr},
      {"llava_mnist", InputDescription(c)},
  };
  if (p.type == ProjectorType::kMlp2xGelu) j["mm_projector_hidden_size"] = p.EffectiveHiddenDim();
  return j;
}

std::string Readme(const TrainCheckpoint& c, ExportFormat format, const std::string& weights_file) {
  const ProjectorConfig& p = c.projector_config;
  const bool mlp = p.type == ProjectorType::kMlp2xGelu;
  const int64_t in = p.input_dim, hidden = p.EffectiveHiddenDim(),
                out = p.output_dim * p.image_tokens;
  std::string load;
  if (format == ExportFormat::kHf && mlp) {
    load = absl::StrCat(
        "import torch\n"
        "from safetensors.torch import load_file\n"
        "from transformers import LlavaConfig\n"
        "from transformers.models.llava.modeling_llava import LlavaMultiModalProjector\n\n"
        "config = LlavaConfig.from_pretrained(\".\")  # this directory's config.json\n"
        "projector = LlavaMultiModalProjector(config)\n"
        "state = load_file(\"",
        weights_file,
        "\")\n"
        "projector.load_state_dict({k.removeprefix(\"multi_modal_projector.\"): v for k, v in "
        "state.items()})\n");
  } else if (format == ExportFormat::kHf) {
    load = absl::StrCat(
        "import torch\n"
        "from safetensors.torch import load_file\n\n"
        "state = load_file(\"",
        weights_file,
        "\")\n"
        "projector = torch.nn.Linear(",
        in, ", ", out,
        ")\n"
        "projector.load_state_dict({k.removeprefix(\"multi_modal_projector.linear_1.\"): v for k, "
        "v in state.items()})\n");
  } else {
    const std::string module =
        mlp ? absl::StrCat("torch.nn.Sequential(torch.nn.Linear(", in, ", ", hidden,
                           "), torch.nn.GELU(), torch.nn.Linear(", hidden, ", ", out, "))")
            : absl::StrCat("torch.nn.Linear(", in, ", ", out, ")");
    load = absl::StrCat(
        "import torch\n"
        "from safetensors.torch import load_file\n\n"
        "state = load_file(\"",
        weights_file,
        "\")\n"
        "projector = ",
        module, "  # LLaVA's build_vision_projector(\"", ProjectorTypeName(p.type),
        "\")\n"
        "projector.load_state_dict({k.removeprefix(\"model.mm_projector.\"): v for k, v in "
        "state.items()})\n");
  }
  return absl::StrCat(
      "# llava-mnist projector (", ExportFormatName(format), " names)\n\n", "A ",
      ProjectorTypeName(p.type), " projector trained by llava-mnist against `", c.model_spec,
      "`, exported from `", c.source, "`.\n\n", "- `", weights_file, "`: float32 safetensors, ",
      format == ExportFormat::kHf
          ? "transformers' `LlavaForConditionalGeneration` names (`multi_modal_projector.*`)"
          : "LLaVA's `mm_projector` names (`model.mm_projector.*`)",
      ".\n- `config.json`: the shapes, and under `llava_mnist` the input and where it came "
      "from.\n\n",
      "## Input\n\n", "No vision encoder: the input is the ", in,
      " raw pixels of a 28x28 digit, row-major, each byte b "
      "normalized as `x = (b / 255 - ",
      p.input_mean, ") / ", p.input_std,
      "` before the first layer (the weights expect normalized pixels). The output (", out,
      " values) is ", p.image_tokens, " embedding(s) of width ", p.output_dim,
      " for the LLM's input sequence (`reshape(", p.image_tokens, ", ", p.output_dim, ")`).\n\n",
      mlp ? "The activation is the exact (erf) GELU: transformers' `gelu`, `torch.nn.GELU()`.\n\n"
          : "",
      "## Load\n\n```python\n", load,
      "\npixels = torch.tensor(digit_bytes, dtype=torch.float32).view(1, ", in, ") / 255\n",
      "embeddings = projector((pixels - ", p.input_mean, ") / ", p.input_std, ").view(1, ",
      p.image_tokens, ", ", p.output_dim, ")\n```\n\n", "If `", kReferenceFile,
      "` is here, it holds digits (`pixels`, byte/255), their `labels` and the "
      "`embeddings` llava-mnist's projector gives them: the loaded projector should match them.\n");
}

}  // namespace

absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name) {
  if (name == "hf") return ExportFormat::kHf;
  if (name == "llava") return ExportFormat::kLlava;
  return absl::InvalidArgumentError(absl::StrCat("--format '", name, "': expected hf or llava"));
}

const char* ExportFormatName(ExportFormat format) {
  return format == ExportFormat::kHf ? "hf" : "llava";
}

absl::StatusOr<ProjectorExport> ExportProjector(const TrainCheckpoint& checkpoint,
                                                ExportFormat format) {
  const ProjectorConfig& p = checkpoint.projector_config;
  if (p.type == ProjectorType::kConvMlp) {
    // Neither names a convolutional encoder before the projector; the checkpoint itself is
    // plain safetensors (projector.conv1.weight, ...) that any loader reads.
    return absl::InvalidArgumentError(absl::StrCat(
        "--format ", ExportFormatName(format),
        ": a conv_mlp projector has a convolutional image "
        "encoder, which neither transformers' LlavaMultiModalProjector nor LLaVA's "
        "build_vision_projector holds; its checkpoint ",
        checkpoint.source, " is safetensors with the PyTorch names (projector.conv1.weight, ...)"));
  }
  ProjectorExport out;
  if (format == ExportFormat::kHf) {
    LM_RETURN_IF_ERROR(CheckHfFits(p));
    out.weights_file = "model.safetensors";
    out.config_json = HfConfig(checkpoint).dump(2) + "\n";
  } else {
    out.weights_file = "mm_projector.safetensors";
    out.config_json = LlavaConfig(checkpoint).dump(2) + "\n";
  }
  for (const NamedTensor& t : checkpoint.projector_tensors) {
    out.tensors.push_back(
        {ExportedName(format, p.type, t.name), t.tensor.to(at::kCPU, at::kFloat).contiguous()});
  }
  out.readme = Readme(checkpoint, format, out.weights_file);
  return out;
}

absl::Status WriteProjectorExport(const ProjectorExport& exported, const std::string& out_dir) {
  LM_RETURN_IF_ERROR(MakeDirs(out_dir));
  // "format": "pt" is what transformers' save_pretrained writes and from_pretrained checks.
  LM_RETURN_IF_ERROR(WriteSafetensors(out_dir + "/" + exported.weights_file, exported.tensors,
                                      {{"format", "pt"}}));
  LM_RETURN_IF_ERROR(WriteFileAtomic(out_dir + "/config.json", exported.config_json));
  return WriteFileAtomic(out_dir + "/README.md", exported.readme);
}

absl::Status WriteReferenceEmbeddings(const TrainCheckpoint& checkpoint, const at::Tensor& pixels,
                                      const at::Tensor& labels, const std::string& path) {
  LM_ASSIGN_OR_RETURN(Projector projector, RestoreProjector(checkpoint, at::kCPU));
  at::NoGradGuard no_grad;
  at::Tensor embeddings = projector->forward(pixels);  // [N, k, D]
  return WriteSafetensors(path, {{"pixels", pixels.to(at::kFloat).contiguous()},
                                 {"labels", labels.to(at::kLong).contiguous()},
                                 {"embeddings", embeddings.contiguous()}});
}

}  // namespace llava
