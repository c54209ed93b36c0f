// `llava-mnist export`: a projector checkpoint under transformers' or LLaVA's tensor
// names, with a config.json, a README.md and optionally reference embeddings
// (common/projector_export.h).
#pragma once

#include <vector>

#include "absl/status/status.h"

namespace llava {

absl::Status RunExport(const std::vector<char*>& args);

}  // namespace llava
