#include "common/llama_forward.h"

#include <torch/version.h>

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <vector>

#include "common/fused_ops.h"
#include "common/log.h"

namespace llava {
namespace {

// At least float32 (float64 stays float64, for gradient checks).
at::ScalarType AtLeastFloat(at::ScalarType t) { return at::promote_types(t, at::kFloat); }

bool IsHalf(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

bool Float32Attention(const LlamaModel& m, const ForwardOptions& o) {
  return o.float32_attention && m.dtype == at::kBFloat16;
}

// x [..., K] in the model dtype times weight [N, K] transposed -> [..., N], the float32
// sums unrounded when `float32_out` (a half model; see ForwardOptions).
at::Tensor Linear(const at::Tensor& x, const at::Tensor& weight, bool float32_out) {
  return float32_out ? LinearFloat32Out(x, weight) : at::linear(x, weight);
}

// The linear layers reading one input x [..., K]: each matrix in FP8 where the layer
// holds it so (x quantized once, at the first, for all of them), else dense.
class LayerInput {
 public:
  LayerInput(const LlamaModel& m, const ForwardOptions& o, at::Tensor x)
      : m_(m), o_(o), x_(std::move(x)) {}

  at::Tensor Apply(const at::Tensor& dense, const Fp8Matrix& fp8, bool float32_out) {
    if (!fp8.defined()) return Linear(x_, dense, float32_out);
    if (!q_.data.defined()) q_ = QuantizeFp8Input(x_);
    return Fp8Linear(q_, fp8, float32_out ? at::kFloat : m_.dtype, o_);
  }

 private:
  const LlamaModel& m_;
  const ForwardOptions& o_;
  at::Tensor x_;
  Fp8Input q_;
};

// Whether a block's output matmul (o_proj, down_proj) writes float32 into the float32
// residual stream.
bool Float32BlockOutputs(const LlamaModel& m, const ForwardOptions& o) {
  return o.fp32_residual && IsHalf(m.dtype);
}

// at::rms_norm (one fused kernel on CUDA) exists from torch 2.4 on.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define LLAVA_HAVE_AT_RMS_NORM 1
#endif

// transformers' LlamaRMSNorm: normalize in float32, then scale by the weight. The norm
// weights of a bf16/fp16 model are held in float32 (see LlamaModel), so the product is
// rounded once, to the model dtype that the following matmul reads.
at::Tensor RmsNorm(const LlamaModel& m, const ForwardOptions& o, const at::Tensor& x,
                   const at::Tensor& weight, double eps) {
  const at::ScalarType f = AtLeastFloat(x.scalar_type());
#ifdef LLAVA_HAVE_AT_RMS_NORM
  if (o.lean_elementwise) {
    // One pass instead of four.
    return at::rms_norm(x.to(f), {x.size(-1)}, weight.to(f), eps).to(m.dtype);
  }
#endif
  at::Tensor h = x.to(f);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return (weight * h).to(m.dtype);
}

// The rotation of absolute positions start .. start+T-1, in float32 (freqs duplicated
// over both halves, as transformers computes them). Each [T, hd].
struct Rope {
  at::Tensor cos;
  at::Tensor sin;
  at::Tensor sin_signed;  // sin with its first half negated: see ApplyRope
};

Rope MakeRope(const LlamaModel& m, int64_t start, int64_t t, at::ScalarType dtype) {
  at::Tensor pos = at::arange(start, start + t, m.inv_freq.options().dtype(at::kFloat));
  at::Tensor freqs = at::outer(pos, m.inv_freq);  // [T, hd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);   // [T, hd]
  Rope r;
  r.cos = emb.cos().to(dtype);
  r.sin = emb.sin().to(dtype);
  r.sin_signed = at::cat({-freqs.sin(), freqs.sin()}, -1).to(dtype);
  return r;
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x [B, H, T, hd] (any float dtype) -> x * cos + rotate_half(x) * sin, computed in the
// rope's float32 and rounded once to x's dtype.
at::Tensor ApplyRope(const ForwardOptions& o, const at::Tensor& x, const Rope& r) {
  if (o.lean_elementwise && o.fused_rope && RopeIsFused(x, r.cos)) {
    return RopeFused(x, r.cos, r.sin_signed);
  }
  if (o.lean_elementwise) {
    // rotate_half(x) * sin == roll(x, hd/2) * sin_signed: one pass for the rotated half
    // instead of a negation and a concatenation, and x read in its own dtype by the
    // float32 products instead of through a float32 copy.
    return (x * r.cos).addcmul_(x.roll(x.size(-1) / 2, -1), r.sin_signed).to(x.scalar_type());
  }
  at::Tensor h = x.to(r.cos.scalar_type());
  return (h * r.cos + RotateHalf(h) * r.sin).to(x.scalar_type());
}

// [B, Hkv, S, hd] -> [B, Hkv * groups, S, hd]: query head h reads kv head h / groups.
at::Tensor RepeatKv(const at::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  const int64_t b = x.size(0), hkv = x.size(1), s = x.size(2), hd = x.size(3);
  return x.unsqueeze(2).expand({b, hkv, groups, s, hd}).reshape({b, hkv * groups, s, hd});
}

// Which keys each query may see: queries at absolute positions past .. past+T-1, keys at
// 0 .. S-1. Built once per forward pass (not per layer).
struct AttentionMask {
  bool causal = false;             // top-left causal (past == 0 and T == S)
  c10::optional<at::Tensor> mask;  // [T, S] bool, true = attend; none when T == 1
  // The mask of grouped-query attention with the query heads folded into the query
  // length (see GroupedAttention): row i*T + t is row t of `mask`. [G*T, S]
  c10::optional<at::Tensor> folded;
};

AttentionMask MakeAttentionMask(int64_t past, int64_t t, int64_t groups,
                                const at::TensorOptions& options) {
  AttentionMask m;
  if (t == 1) return m;  // one query at the end sees every key
  if (past == 0) {
    m.causal = true;
    return m;
  }
  at::Tensor qi = at::arange(past, past + t, options.dtype(at::kLong)).unsqueeze(1);  // [T, 1]
  at::Tensor kj = at::arange(0, past + t, options.dtype(at::kLong)).unsqueeze(0);     // [1, S]
  m.mask = kj <= qi;                                                                  // [T, S]
  if (groups > 1) m.folded = m.mask->repeat({groups, 1});                             // [G*T, S]
  return m;
}

// float32 attention with at most this many scores per head and row (T * S) runs as two
// matmuls and a softmax instead of the fused kernel: see Attention.
constexpr int64_t kMaxMaterializedScores = 1 << 16;

// q [B, H, T, hd], k/v [B, H, S, hd]; mask [T, S] bool (true = attend) unless causal.
at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                     const c10::optional<at::Tensor>& mask) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const int64_t t = q.size(2), s = k.size(2);
#if TORCH_VERSION_MAJOR >= 2
  // Fused kernels (flash / memory-efficient) where the shapes allow, except for short
  // float32 attention (float32 models, bf16 models' float32_attention): there the fused
  // float32 kernel took a large share of an 8B eval batch (many rows, few keys) where the
  // matmuls below take a few percent, and the scores they materialize are small
  // (bench/RESULTS.md, on the float32-attention row).
  if (q.scalar_type() != at::kFloat || t * s > kMaxMaterializedScores) {
    return at::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, scale);
  }
#endif
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
}

// q [B, H, T, hd], k/v [B, Hkv, S, hd] with H = Hkv * groups: query head h reads KV head
// h / groups.
at::Tensor GroupedAttention(const ForwardOptions& o, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const AttentionMask& am) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), hd = q.size(3), hkv = k.size(1);
  LM_CHECK_EQ(h % hkv, 0);
  const int64_t groups = h / hkv;
  // The causal case (a whole sequence from position 0: the prompt prefix, the plain path)
  // keeps the copies, so that it keeps the fused kernels' causal mode.
  if (groups == 1 || !o.fold_gqa || am.causal) {
    return Attention(q, RepeatKv(k, groups), RepeatKv(v, groups), am.causal, am.mask);
  }
  // The `groups` query heads of each KV head become `groups` times as many queries of it,
  // row i*T + t for head j*groups + i at position t, each with its position's mask row:
  // the keys and values are read in place instead of copied per query head. Exact.
  LM_CHECK(t == 1 || am.folded.has_value());
  at::Tensor qf = q.reshape({b, hkv, groups * t, hd});  // [B, Hkv, G*T, hd]
  if (t == 1 && o.fused_decode_attention && DecodeAttentionIsFused(qf, k, v)) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    return DecodeAttentionFused(qf, k, v, scale).reshape({b, h, t, hd});
  }
  return Attention(qf, k, v, false, am.folded).reshape({b, h, t, hd});  // [B, H, T, hd]
}

struct Qkv {
  at::Tensor q;     // [B, H, T, hd], rotated
  at::Tensor k, v;  // [B, Hkv, T, hd], k rotated
};

// The projections of x [B, T, D].
Qkv ProjectQkv(const LlamaModel& m, const ForwardOptions& o, const LlamaLayerWeights& w,
               const at::Tensor& x, const Rope& rope) {
  const LlamaConfig& c = m.config;
  const int64_t b = x.size(0), t = x.size(1), hd = c.head_dim;
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads;
  LayerInput in(m, o, x);
  const bool f32 = Float32Attention(m, o);
  std::vector<at::Tensor> qkv;  // each [B, T, n*hd]
  if (w.fp8.qkv.defined()) {
    // One matmul; split's backward writes the three gradients into one for its backward.
    qkv =
        in.Apply(at::Tensor(), w.fp8.qkv, f32).split_with_sizes({nq * hd, nkv * hd, nkv * hd}, -1);
  } else {
    qkv = {in.Apply(w.q_proj, w.fp8.q_proj, f32), in.Apply(w.k_proj, w.fp8.k_proj, f32),
           in.Apply(w.v_proj, w.fp8.v_proj, f32)};
  }
  // [B, T, n*hd] -> [B, n, T, hd]
  auto heads = [&](const at::Tensor& y, int64_t n) {
    return y.view({b, t, n, hd}).transpose(1, 2);
  };
  return {ApplyRope(o, heads(qkv[0], nq), rope), ApplyRope(o, heads(qkv[1], nkv), rope),
          heads(qkv[2], nkv)};
}

at::Tensor AttentionBlock(const LlamaModel& m, const ForwardOptions& o, const LlamaLayerWeights& w,
                          const at::Tensor& x, const Rope& rope, const AttentionMask& am,
                          int64_t layer, KvCache* cache, const KvCache* prefix) {
  const LlamaConfig& c = m.config;
  const int64_t b = x.size(0), t = x.size(1), hd = c.head_dim;
  Qkv p = ProjectQkv(m, o, w, x, rope);
  at::Tensor q = p.q, k = p.k, v = p.v;
  if (cache != nullptr) {
    const int64_t past = cache->length;
    cache->k[layer].narrow(2, past, t).copy_(k);
    cache->v[layer].narrow(2, past, t).copy_(v);
    k = cache->k[layer].narrow(2, 0, past + t);  // [B, Hkv, past+T, hd]
    v = cache->v[layer].narrow(2, 0, past + t);
  } else if (prefix != nullptr) {
    // The shared prefix, broadcast over the rows: [B, Hkv, P+T, hd].
    const at::Tensor& pk = prefix->k[layer];
    const at::Tensor& pv = prefix->v[layer];
    k = at::cat({pk.narrow(2, 0, prefix->length).expand({b, -1, -1, -1}), k}, 2);
    v = at::cat({pv.narrow(2, 0, prefix->length).expand({b, -1, -1, -1}), v}, 2);
  }
  at::Tensor out = GroupedAttention(o, q, k, v, am);  // [B, H, T, hd]
  // [B, T, H*hd] in the model dtype: the heads' transpose and the rounding as one copy.
  at::Tensor merged = at::empty({b, t, c.num_attention_heads * hd}, out.options().dtype(m.dtype));
  merged.view({b, t, c.num_attention_heads, hd}).copy_(out.transpose(1, 2));
  return LayerInput(m, o, merged)
      .Apply(w.o_proj, w.fp8.o_proj, Float32BlockOutputs(m, o));  // [B, T, D]
}

at::Tensor Mlp(const LlamaModel& m, const ForwardOptions& o, const LlamaLayerWeights& w,
               const at::Tensor& x) {
  LayerInput in(m, o, x);
  at::Tensor act;
  if (w.fp8.gate_up.defined()) {
    act = SwiGluPacked(in.Apply(at::Tensor(), w.fp8.gate_up, false), o.fused_swiglu);
  } else {
    at::Tensor gate = in.Apply(w.gate_proj, w.fp8.gate_proj, false);
    act = SwiGlu(gate, in.Apply(w.up_proj, w.fp8.up_proj, false), o.fused_swiglu);
  }
  return LayerInput(m, o, act).Apply(w.down_proj, w.fp8.down_proj,
                                     Float32BlockOutputs(m, o));  // [B, T, F] -> [B, T, D]
}

// The decoder stack of DecoderForward, each block's output added to the float32 residual
// stream h (in place without a gradient, else h is replaced) by the kernel that also
// computes the next RMSNorm: what the loop in DecoderForward computes, with one pass per
// step of the stream instead of three (and one for its gradient).
at::Tensor DecoderLayersFusedNorm(const LlamaModel& m, const ForwardOptions& o, at::Tensor& h,
                                  const Rope& rope, const AttentionMask& mask, KvCache* cache,
                                  const KvCache* prefix) {
  const double eps = m.config.rms_norm_eps;
  const std::vector<LlamaLayerWeights>& layers = m.weights.layers;
  if (layers.empty()) return AddRmsNorm(h, at::Tensor(), m.weights.norm, eps, m.dtype);
  at::Tensor normed = AddRmsNorm(h, at::Tensor(), layers[0].input_layernorm, eps, m.dtype);
  for (size_t i = 0; i < layers.size(); ++i) {
    const LlamaLayerWeights& w = layers[i];
    at::Tensor attn =
        AttentionBlock(m, o, w, normed, rope, mask, static_cast<int64_t>(i), cache, prefix);
    normed = AddRmsNorm(h, attn.contiguous(), w.post_attention_layernorm, eps, m.dtype);
    const at::Tensor& next = i + 1 < layers.size() ? layers[i + 1].input_layernorm : m.weights.norm;
    normed = AddRmsNorm(h, Mlp(m, o, w, normed).contiguous(), next, eps, m.dtype);
  }
  return normed;
}

}  // namespace

KvCache MakeKvCache(const LlamaModel& m, const ForwardOptions& o, int64_t batch, int64_t capacity) {
  const LlamaConfig& c = m.config;
  KvCache cache;
  const at::TensorOptions to = at::TensorOptions().dtype(KvCacheDtype(m, o)).device(m.device);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    cache.k.push_back(at::zeros({batch, c.num_key_value_heads, capacity, c.head_dim}, to));
    cache.v.push_back(at::zeros({batch, c.num_key_value_heads, capacity, c.head_dim}, to));
  }
  return cache;
}

KvCache ComputePrefixKv(const LlamaModel& m, const ForwardOptions& o, const at::Tensor& ids) {
  LM_CHECK_EQ(ids.dim(), 2);
  LM_CHECK_EQ(ids.size(0), 1);
  at::NoGradGuard no_grad;
  KvCache cache = MakeKvCache(m, o, 1, ids.size(1));
  DecoderForward(m, o, EmbedTokens(m, ids.to(m.device)), &cache);
  return cache;
}

KvCache MakeKvCacheFromPrefix(const LlamaModel& m, const ForwardOptions& o, const KvCache& prefix,
                              int64_t batch, int64_t capacity) {
  LM_CHECK_EQ(prefix.batch(), 1);
  LM_CHECK_LE(prefix.length, capacity);
  const LlamaConfig& c = m.config;
  KvCache cache;
  const at::TensorOptions to = at::TensorOptions().dtype(KvCacheDtype(m, o)).device(m.device);
  const int64_t p = prefix.length;
  for (size_t i = 0; i < prefix.k.size(); ++i) {
    // Positions past the prefix are written before they are read: no need to zero them.
    at::Tensor k = at::empty({batch, c.num_key_value_heads, capacity, c.head_dim}, to);
    at::Tensor v = at::empty({batch, c.num_key_value_heads, capacity, c.head_dim}, to);
    k.narrow(2, 0, p).copy_(prefix.k[i].narrow(2, 0, p).expand({batch, -1, -1, -1}));
    v.narrow(2, 0, p).copy_(prefix.v[i].narrow(2, 0, p).expand({batch, -1, -1, -1}));
    cache.k.push_back(std::move(k));
    cache.v.push_back(std::move(v));
  }
  cache.length = p;
  return cache;
}

at::Tensor EmbedTokens(const LlamaModel& m, const at::Tensor& ids) {
  return at::embedding(m.weights.embed_tokens, ids);
}

at::Tensor DecoderForward(const LlamaModel& m, const ForwardOptions& o,
                          const at::Tensor& inputs_embeds, KvCache* cache, const KvCache* prefix) {
  LM_CHECK_EQ(inputs_embeds.dim(), 3);
  LM_CHECK_EQ(inputs_embeds.size(2), m.config.hidden_size);
  LM_CHECK(cache == nullptr || prefix == nullptr) << "a cache or a prefix, not both";
  const int64_t t = inputs_embeds.size(1);
  const int64_t start = cache != nullptr ? cache->length : prefix != nullptr ? prefix->length : 0;
  if (cache != nullptr) {
    LM_CHECK_EQ(cache->batch(), inputs_embeds.size(0));
    LM_CHECK_LE(start + t, cache->capacity()) << "KV cache too small";
  }
  if (prefix != nullptr) {
    LM_CHECK_EQ(prefix->batch(), 1);
    LM_CHECK_EQ(static_cast<int64_t>(prefix->k.size()), m.config.num_hidden_layers);
  }
  // A cache or prefix made under other options (float32_attention) holds keys and values
  // of another precision than this pass computes: refused rather than silently mixed.
  for (const KvCache* kv : {static_cast<const KvCache*>(cache), prefix}) {
    if (kv != nullptr && !kv->k.empty()) {
      LM_CHECK(kv->k[0].scalar_type() == KvCacheDtype(m, o))
          << "a KV cache of " << kv->k[0].scalar_type() << " where these options make "
          << KvCacheDtype(m, o);
    }
  }
  // The residual stream stays in float32 for bf16/fp16 models unless the options say
  // otherwise (fp32_residual): each block's output is added without rounding the running
  // sum to 8 mantissa bits (see bench/RESULTS.md for what it buys and costs). The blocks
  // themselves read and compute in the model dtype.
  at::Tensor h = inputs_embeds.to(o.fp32_residual ? AtLeastFloat(m.dtype) : m.dtype);  // [B, T, D]
  const Rope rope = MakeRope(m, start, t, AtLeastFloat(m.dtype));
  const AttentionMask mask =
      MakeAttentionMask(start, t, m.config.num_kv_groups(), inputs_embeds.options());
  const double eps = m.config.rms_norm_eps;
  at::Tensor out;
  if (o.lean_elementwise && o.fused_residual_norm && AddRmsNormIsFused(h, m.weights.norm)) {
    // Updated in place from here on where no gradient is recorded: never the caller's tensor.
    if (h.is_same(inputs_embeds)) h = h.clone();
    out = DecoderLayersFusedNorm(m, o, h, rope, mask, cache, prefix);
  } else {
    for (size_t i = 0; i < m.weights.layers.size(); ++i) {
      const LlamaLayerWeights& w = m.weights.layers[i];
      // A float32 block output is rounded first where the stream is in the model dtype.
      at::Tensor attn = AttentionBlock(m, o, w, RmsNorm(m, o, h, w.input_layernorm, eps), rope,
                                       mask, static_cast<int64_t>(i), cache, prefix);
      h = h + attn.to(h.scalar_type());
      h = h + Mlp(m, o, w, RmsNorm(m, o, h, w.post_attention_layernorm, eps)).to(h.scalar_type());
    }
    out = RmsNorm(m, o, h, m.weights.norm, eps);
  }
  if (cache != nullptr) cache->length += t;
  return out;
}

at::ScalarType KvCacheDtype(const LlamaModel& m, const ForwardOptions& o) {
  return Float32Attention(m, o) ? at::kFloat : m.dtype;
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

at::Tensor ForwardLogits(const LlamaModel& m, const ForwardOptions& o, const at::Tensor& ids) {
  return LmHeadLogits(m, DecoderForward(m, o, EmbedTokens(m, ids)));
}

}  // namespace llava
