#include "common/llama_forward.h"

#include <torch/version.h>

#include <cmath>

#include "common/log.h"

namespace llava {
namespace {

// At least float32 (float64 stays float64, for gradient checks).
at::ScalarType AtLeastFloat(at::ScalarType t) { return at::promote_types(t, at::kFloat); }

// transformers' LlamaRMSNorm: normalize in float32, cast to the model dtype, then scale.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor h = x.to(AtLeastFloat(x.scalar_type()));
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(weight.scalar_type());
}

// cos/sin [T, hd] for absolute positions start .. start+T-1, computed in float32 as
// transformers does (freqs duplicated over both halves), cast to the model dtype.
std::pair<at::Tensor, at::Tensor> RopeCosSin(const LlamaModel& m, int64_t start, int64_t t,
                                             at::ScalarType dtype) {
  at::Tensor pos = at::arange(start, start + t, m.inv_freq.options().dtype(at::kFloat));
  at::Tensor freqs = at::outer(pos, m.inv_freq);  // [T, hd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);    // [T, hd]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x [B, H, T, hd]; cos/sin [T, hd].
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos + RotateHalf(x) * sin;
}

// [B, Hkv, S, hd] -> [B, Hkv * groups, S, hd]: query head h reads kv head h / groups.
at::Tensor RepeatKv(const at::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  const int64_t b = x.size(0), hkv = x.size(1), s = x.size(2), hd = x.size(3);
  return x.unsqueeze(2).expand({b, hkv, groups, s, hd}).reshape({b, hkv * groups, s, hd});
}

// q [B, H, T, hd], k/v [B, H, S, hd]; query i sits at absolute position past + i and sees
// keys 0 .. past + i.
at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     int64_t past) {
  const int64_t t = q.size(2), s = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  c10::optional<at::Tensor> mask;
  bool causal = false;
  if (t > 1) {
    if (past == 0 && t == s) {
      causal = true;
    } else {
      at::Tensor qi = at::arange(past, past + t, q.options().dtype(at::kLong)).unsqueeze(1);
      at::Tensor kj = at::arange(0, s, q.options().dtype(at::kLong)).unsqueeze(0);
      mask = kj <= qi;  // [T, S] bool, true = attend
    }
  }
#if TORCH_VERSION_MAJOR >= 2
  // Fused kernels (flash / memory-efficient) where the shapes allow.
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, scale);
#else
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scale;  // [B, H, T, S]
  if (causal) {
    at::Tensor keep = at::ones({t, s}, q.options().dtype(at::kBool)).tril();
    scores = scores.masked_fill(keep.logical_not(), -INFINITY);
  } else if (mask.has_value()) {
    scores = scores.masked_fill(mask->logical_not(), -INFINITY);
  }
  // Softmax in float32 as transformers' eager attention, then back to the model dtype.
  at::Tensor probs = at::softmax(scores, -1, AtLeastFloat(q.scalar_type())).to(q.scalar_type());
  return at::matmul(probs, v);  // [B, H, T, hd]
#endif
}

at::Tensor AttentionBlock(const LlamaModel& m, const LlamaLayerWeights& w, const at::Tensor& x,
                          const std::pair<at::Tensor, at::Tensor>& rope, int64_t layer,
                          KvCache* cache) {
  const LlamaConfig& c = m.config;
  const int64_t b = x.size(0), t = x.size(1), hd = c.head_dim;
  // [B, T, H*hd] -> [B, H, T, hd]
  at::Tensor q = at::linear(x, w.q_proj).view({b, t, c.num_attention_heads, hd}).transpose(1, 2);
  at::Tensor k = at::linear(x, w.k_proj).view({b, t, c.num_key_value_heads, hd}).transpose(1, 2);
  at::Tensor v = at::linear(x, w.v_proj).view({b, t, c.num_key_value_heads, hd}).transpose(1, 2);
  // Rotation in float32, rounded once to the model dtype afterwards.
  q = ApplyRope(q.to(rope.first.scalar_type()), rope.first, rope.second).to(q.scalar_type());
  k = ApplyRope(k.to(rope.first.scalar_type()), rope.first, rope.second).to(k.scalar_type());
  int64_t past = 0;
  if (cache != nullptr) {
    past = cache->length;
    cache->k[layer].narrow(2, past, t).copy_(k);
    cache->v[layer].narrow(2, past, t).copy_(v);
    k = cache->k[layer].narrow(2, 0, past + t);
    v = cache->v[layer].narrow(2, 0, past + t);
  }
  at::Tensor out = Attention(q, RepeatKv(k, c.num_kv_groups()), RepeatKv(v, c.num_kv_groups()),
                             past);                                       // [B, H, T, hd]
  out = out.transpose(1, 2).reshape({b, t, c.num_attention_heads * hd});  // [B, T, H*hd]
  return at::linear(out, w.o_proj);                                       // [B, T, D]
}

at::Tensor Mlp(const LlamaLayerWeights& w, const at::Tensor& x) {
  return at::linear(at::silu(at::linear(x, w.gate_proj)) * at::linear(x, w.up_proj),
                    w.down_proj);
}

}  // namespace

KvCache MakeKvCache(const LlamaModel& m, int64_t batch, int64_t capacity) {
  const LlamaConfig& c = m.config;
  KvCache cache;
  const at::TensorOptions to = at::TensorOptions().dtype(m.dtype).device(m.device);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    cache.k.push_back(at::zeros({batch, c.num_key_value_heads, capacity, c.head_dim}, to));
    cache.v.push_back(at::zeros({batch, c.num_key_value_heads, capacity, c.head_dim}, to));
  }
  return cache;
}

at::Tensor EmbedTokens(const LlamaModel& m, const at::Tensor& ids) {
  return at::embedding(m.weights.embed_tokens, ids);
}

at::Tensor DecoderForward(const LlamaModel& m, const at::Tensor& inputs_embeds,
                          KvCache* cache) {
  LM_CHECK_EQ(inputs_embeds.dim(), 3);
  LM_CHECK_EQ(inputs_embeds.size(2), m.config.hidden_size);
  const int64_t t = inputs_embeds.size(1);
  const int64_t start = cache == nullptr ? 0 : cache->length;
  if (cache != nullptr) {
    LM_CHECK_EQ(cache->batch(), inputs_embeds.size(0));
    LM_CHECK_LE(start + t, cache->capacity()) << "KV cache too small";
  }
  // The residual stream stays in float32 for bf16/fp16 models: each block's output is
  // added without rounding the running sum to 8 mantissa bits (measured on the fixtures:
  // bf16 logits 2-3e-2 from float32 with a bf16 residual; see bench/RESULTS.md). The
  // blocks themselves read and compute in the model dtype.
  at::Tensor h = inputs_embeds.to(AtLeastFloat(m.dtype));  // [B, T, D]
  const auto rope = RopeCosSin(m, start, t, AtLeastFloat(m.dtype));
  const double eps = m.config.rms_norm_eps;
  for (size_t i = 0; i < m.weights.layers.size(); ++i) {
    const LlamaLayerWeights& w = m.weights.layers[i];
    h = h + AttentionBlock(m, w, RmsNorm(h, w.input_layernorm, eps), rope,
                           static_cast<int64_t>(i), cache);
    h = h + Mlp(w, RmsNorm(h, w.post_attention_layernorm, eps));
  }
  if (cache != nullptr) cache->length += t;
  return RmsNorm(h, m.weights.norm, eps);
}

at::Tensor LmHeadLogits(const LlamaModel& m, const at::Tensor& hidden) {
  return at::linear(hidden, m.weights.lm_head);
}

at::Tensor CausalLmLoss(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t v = logits.size(-1);
  // Position t predicts label t+1; the last position predicts nothing.
  at::Tensor shifted = at::constant_pad_nd(labels, {0, 1}, -100).narrow(1, 1, labels.size(1));
  return at::cross_entropy_loss(logits.to(AtLeastFloat(logits.scalar_type())).reshape({-1, v}),
                                shifted.reshape({-1}),
                                /*weight=*/{}, at::Reduction::Mean, /*ignore_index=*/-100);
}

at::Tensor ForwardLogits(const LlamaModel& m, const at::Tensor& ids) {
  return LmHeadLogits(m, DecoderForward(m, EmbedTokens(m, ids)));
}

}  // namespace llava
