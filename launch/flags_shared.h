// Flags every command of both binaries shares that need no libtorch: the random seed and
// an answer's token budget (launch/flags_common.h has the model's and the data's).
#pragma once

#include <cstdint>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(int64_t, max_new_tokens);
ABSL_DECLARE_FLAG(uint64_t, seed);
