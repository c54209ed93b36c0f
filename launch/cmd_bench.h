// `llava-mnist bench`: times the product's own training step (Trainer's
// ComputeShareGradients + ApplyGradients) and evaluation (EvaluateRange) on a model,
// medians over repeated steps after warm-up with the device synchronized; prints a table
// and writes JSON. bench/run_all.sh runs it beside the transformers reference.
#pragma once

#include <vector>

#include "absl/status/status.h"

namespace llava {

absl::Status RunBench(const std::vector<char*>& args);

}  // namespace llava
