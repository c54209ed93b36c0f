// The VLM subcommands: `train` (one process), `eval`, `ask`.
#pragma once

#include <vector>

#include "absl/status/status.h"

namespace llava {

absl::Status RunTrain(const std::vector<char*>& args);
absl::Status RunEval(const std::vector<char*>& args);
absl::Status RunAsk(const std::vector<char*>& args);

}  // namespace llava
