// Foundation subcommands: `info`, `tokenize`, `generate`.
#pragma once
#include <vector>
#include "absl/status/status.h"
namespace llava {
absl::Status RunInfo(const std::vector<char*>& args);
absl::Status RunTokenize(const std::vector<char*>& args);
absl::Status RunGenerate(const std::vector<char*>& args);
}  // namespace llava
