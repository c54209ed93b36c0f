// Greedy decoding with a KV cache, from token ids or from input embeddings, batched,
// stopping per row at any EOS id or at the token budget. Stateless; the model is shared
// read-only and computes under the ForwardOptions given, every call owns its cache.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "common/forward_options.h"
#include "common/llama_forward.h"
#include "common/llama_weights.h"

namespace llava {

struct GenerateParams {
  int64_t max_new_tokens = 20;
  // Stop a row once it emits one of these (the EOS token is kept in its output).
  // Empty: the model config's eos_token_ids.
  std::vector<int64_t> eos_token_ids;
  // false: every row runs the whole budget (no early stop), for measuring.
  bool stop_at_eos = true;
};

// inputs_embeds [B, T, D] -> the new tokens of each row (prompt excluded), each ending
// at its first EOS or after max_new_tokens. With `prefix` (ComputePrefixKv of the
// positions before inputs_embeds, shared by every row, made under the same options),
// inputs_embeds continue it.
std::vector<std::vector<int64_t>> GreedyGenerateFromEmbeds(const LlamaModel& model,
                                                           const ForwardOptions& options,
                                                           const at::Tensor& inputs_embeds,
                                                           const GenerateParams& params,
                                                           const KvCache* prefix = nullptr);

// ids [B, T] -> the new tokens of each row.
std::vector<std::vector<int64_t>> GreedyGenerate(const LlamaModel& model,
                                                 const ForwardOptions& options,
                                                 const at::Tensor& ids,
                                                 const GenerateParams& params);

}  // namespace llava
