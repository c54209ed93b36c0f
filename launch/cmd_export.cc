#include "launch/cmd_export.h"

#include <iostream>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/mnist_idx.h"
#include "common/projector_export.h"
#include "common/status_macros.h"
#include "common/train_checkpoint.h"
#include "launch/flags_common.h"

ABSL_DECLARE_FLAG(std::string, checkpoint);  // launch/cmd_vlm.cc
ABSL_DECLARE_FLAG(std::string, out);         // launch/cmd_client.cc
ABSL_FLAG(std::string, format, "hf",
          "export: hf (transformers' multi_modal_projector.linear_1/linear_2) or llava "
          "(LLaVA's model.mm_projector.*)");
ABSL_FLAG(int64_t, reference_digits, 0,
          "export: also write reference.safetensors with the first N test digits of --data_dir "
          "and this build's projector's embeddings of them (0: none)");

namespace llava {

absl::Status RunExport(const std::vector<char*>& args) {
  if (args.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("export takes no positional arguments, got '", args[1], "'"));
  }
  const std::string out_dir = absl::GetFlag(FLAGS_out);
  if (out_dir.empty()) return absl::InvalidArgumentError("export: --out DIR is required");
  const int64_t digits = absl::GetFlag(FLAGS_reference_digits);
  if (digits < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--reference_digits must be >= 0, got ", digits));
  }
  LM_ASSIGN_OR_RETURN(ExportFormat format, ParseExportFormat(absl::GetFlag(FLAGS_format)));
  LM_ASSIGN_OR_RETURN(TrainCheckpoint checkpoint,
                      LoadTrainCheckpoint(absl::GetFlag(FLAGS_checkpoint)));
  LM_ASSIGN_OR_RETURN(ProjectorExport exported, ExportProjector(checkpoint, format));
  LM_RETURN_IF_ERROR(WriteProjectorExport(exported, out_dir));
  if (digits > 0) {
    LM_ASSIGN_OR_RETURN(MnistSet test,
                        LoadMnistSplit(absl::GetFlag(FLAGS_data_dir), "test", digits));
    LM_RETURN_IF_ERROR(WriteReferenceEmbeddings(checkpoint, ImagesToTensor(test, 0, test.size()),
                                                LabelsToTensor(test, 0, test.size()),
                                                out_dir + "/" + kReferenceFile));
  }
  std::cout << "exported " << checkpoint.source << " ("
            << ProjectorTypeName(checkpoint.projector_config.type) << ") as "
            << ExportFormatName(format) << " to " << out_dir << "/" << exported.weights_file
            << (digits > 0 ? absl::StrCat(" with ", digits, " reference digits") : "") << "\n";
  return absl::OkStatus();
}

}  // namespace llava
