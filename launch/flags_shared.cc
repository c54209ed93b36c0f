#include "launch/flags_shared.h"

#include "absl/flags/flag.h"

ABSL_FLAG(int64_t, max_new_tokens, 20, "generate/eval/ask: token budget of an answer");
ABSL_FLAG(uint64_t, seed, 0, "random seed (synthetic weights, shuffling, initialization)");
