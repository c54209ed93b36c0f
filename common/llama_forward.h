// Free forward functions of the frozen Llama: embeddings, the decoder stack (RMSNorm,
// RoPE with llama3 scaling, causal grouped-query attention, SwiGLU MLP), the final norm,
// lm_head and the causal-LM loss, computing what transformers' LlamaForCausalLM
// computes. Gradients flow to inputs_embeds; weights never get any. Functions are
// stateless: each computes with a const model under the ForwardOptions it is given (one
// model serves several option sets at once); a KvCache belongs to one caller (not
// thread-safe) and to the options it was made under.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "common/forward_options.h"
#include "common/llama_weights.h"

namespace llava {

// Keys and values of the positions seen so far, written in place by DecoderForward.
struct KvCache {
  // In KvCacheDtype(model, options).
  std::vector<at::Tensor> k;  // per layer [B, Hkv, capacity, hd]
  std::vector<at::Tensor> v;  // per layer [B, Hkv, capacity, hd]
  int64_t length = 0;         // positions filled

  int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
  int64_t batch() const { return k.empty() ? 0 : k[0].size(0); }
};

KvCache MakeKvCache(const LlamaModel& model, const ForwardOptions& options, int64_t batch,
                    int64_t capacity);

// Keys and values of positions 0 .. P-1 of ids [1, P], computed once (no gradient) so
// that many batches sharing that prefix run the decoder from position P on: exact,
// since causal attention never lets a prefix position see what follows it.
KvCache ComputePrefixKv(const LlamaModel& model, const ForwardOptions& options,
                        const at::Tensor& ids);

// A cache for `batch` rows and `capacity` positions whose first prefix.length positions
// hold `prefix` (batch 1) in every row; length = prefix.length.
KvCache MakeKvCacheFromPrefix(const LlamaModel& model, const ForwardOptions& options,
                              const KvCache& prefix, int64_t batch, int64_t capacity);

// ids [B, T] int64 -> [B, T, D] in the model's dtype.
at::Tensor EmbedTokens(const LlamaModel& model, const at::Tensor& ids);

// Runs the decoder stack on inputs_embeds [B, T, D] at positions cache->length ..
// cache->length + T - 1 (0 .. T - 1 without a cache) and returns the final-normed hidden
// states [B, T, D]. With a cache, attention also covers the cached positions, the new
// keys and values are written into it, and its length advances by T.
// With `prefix` (a batch-1 cache from ComputePrefixKv, read only; no `cache` then), the
// inputs sit at positions prefix->length .. and attend to the prefix in every row;
// gradients flow to inputs_embeds as without it.
// A cache or prefix must have been made under options of the same KvCacheDtype (checked).
at::Tensor DecoderForward(const LlamaModel& model, const ForwardOptions& options,
                          const at::Tensor& inputs_embeds, KvCache* cache = nullptr,
                          const KvCache* prefix = nullptr);

// The dtype of the keys and values in a KvCache: float32 where the model's attention
// runs in float32 (a bf16 model under ForwardOptions::float32_attention), else the
// model dtype.
at::ScalarType KvCacheDtype(const LlamaModel& model, const ForwardOptions& options);

// hidden [..., D] -> logits [..., V], in the model's dtype (as transformers returns).
at::Tensor LmHeadLogits(const LlamaModel& model, const at::Tensor& hidden);

// transformers' causal-LM loss: logits [B, T, V] predict labels shifted by one; labels
// [B, T] with -100 where no loss is taken; mean over labelled tokens, in float32.
at::Tensor CausalLmLoss(const at::Tensor& logits, const at::Tensor& labels);

// Convenience for tests and tools: logits [B, T, V] for ids [B, T].
at::Tensor ForwardLogits(const LlamaModel& model, const ForwardOptions& options,
                         const at::Tensor& ids);

}  // namespace llava
