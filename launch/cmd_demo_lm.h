// The `make-demo-lm` subcommand: builds the offline demo LM (worker/demo_lm.h) into
// --demo_out unless a complete one is already there. Runs on the calling thread.
#pragma once

#include <vector>

#include "absl/status/status.h"

namespace llava {

absl::Status RunMakeDemoLm(const std::vector<char*>& args);

}  // namespace llava
