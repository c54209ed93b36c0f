// Export of a trained projector for the Python ecosystem: its tensors renamed to
// transformers' LlavaForConditionalGeneration (`multi_modal_projector.linear_1/linear_2`)
// or LLaVA's (`model.mm_projector.0/2`, or `model.mm_projector` for a single linear),
// float32, with a config.json and a README.md saying what the input is (784 raw pixels,
// normalized as the projector expects) and how to load it; optionally a reference file of
// digits and the embeddings this build's projector gives them, to check a loader against.
// The weights are the checkpoint's unchanged: the pixel normalization stays outside, as
// an image processor's step. Pure functions; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "common/train_checkpoint.h"

namespace llava {

enum class ExportFormat {
  kHf,     // transformers' LlavaForConditionalGeneration names
  kLlava,  // LLaVA's mm_projector names
};

absl::StatusOr<ExportFormat> ParseExportFormat(const std::string& name);  // hf | llava
const char* ExportFormatName(ExportFormat format);

struct ProjectorExport {
  std::string weights_file;          // file name inside the output directory
  std::vector<NamedTensor> tensors;  // the format's names, float32, CPU
  std::string config_json;           // config.json
  std::string readme;                // README.md
};

// The checkpoint's projector under `format`'s names. INVALID_ARGUMENT for an hf export
// that transformers' two-layer projector cannot hold (mlp2x_gelu whose hidden width is
// not the LLM's, or more than one image token).
absl::StatusOr<ProjectorExport> ExportProjector(const TrainCheckpoint& checkpoint,
                                                ExportFormat format);

// Writes the export's three files into `out_dir` (created if missing), each atomically.
absl::Status WriteProjectorExport(const ProjectorExport& exported, const std::string& out_dir);

// reference.safetensors beside an export: "pixels" [N, 784] float32 in [0, 1] (byte/255,
// before normalization), "labels" [N] int64, "embeddings" [N, k, D] float32 from this
// build's projector restored from `checkpoint` on the CPU.
inline constexpr const char* kReferenceFile = "reference.safetensors";
absl::Status WriteReferenceEmbeddings(const TrainCheckpoint& checkpoint, const at::Tensor& pixels,
                                      const at::Tensor& labels, const std::string& path);

}  // namespace llava
