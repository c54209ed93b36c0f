// ForwardOptions: how the frozen Llama's forward functions compute (precision and speed
// switches), kept apart from the model they compute with, as llama.cpp keeps its
// llama_context_params apart from the llama_model. A LlamaModel is immutable once loaded;
// every forward, generation and VLM function takes the model and these options side by
// side, so that one loaded model serves any number of option sets (`bench` measures what
// each switch buys; tests compare two on one model). The commands make one from their
// flags at the top (launch/flags_common.h) and pass it down. A plain value, copied
// freely; no threading rules of its own.
#pragma once

namespace llava {

// How an FP8 model (--weights fp8) computes the gradient of a linear layer's input,
// dx = dy W: a bf16 matmul with the weight dequantized for the call, or an FP8 matmul of
// dy (scaled per row, the weight's row scales folded in) in e4m3 or e5m2. e4m3 by
// default: per-row scales leave e5m2's extra range nothing to cover, and e4m3's extra
// significand bit halves the rounding (bench/RESULTS.md, "FP8").
enum class Fp8Backward { kBf16, kE4m3, kE5m2 };

// Every combination is valid: a switch that does not apply to a model (float32_attention
// off bf16, fp32_residual on a float32 model, fused_swiglu off CUDA) is ignored there.
// The defaults are the product's.
struct ForwardOptions {
  // bf16/fp16 models: carry the residual stream in float32 (each block's output, as its
  // o_proj/down_proj matmul sums it in float32, added without rounding), else in the
  // model dtype as transformers does.
  bool fp32_residual = true;
  // bf16 models: the q/k/v projections write float32, and RoPE, attention and the KV
  // cache work on those values, rounded nowhere (else q, k and v are rounded to bf16 as
  // in transformers): bf16's 8-bit significand loses enough in those steps to matter
  // against transformers' float32 logits, for a little speed and a KV cache twice the
  // size. float16 (3 more bits) is left alone: it is close either way. The figures:
  // bench/RESULTS.md, "bf16 within 2e-2".
  bool float32_attention = true;

  // Speed levers that change results only by float rounding; each can be turned off to
  // measure what it buys (`llava-mnist bench`).
  // Grouped-query attention after a cache or prefix (decode steps, the prompt after its
  // prefix, training from the image on) reads the keys and values in place, the query
  // heads of each KV head folded into its query length, instead of copying them per
  // query head.
  bool fold_gqa = true;
  // RMSNorm as one fused op (torch >= 2.4: at::rms_norm, the weight applied in float32
  // and the product rounded once) and RoPE without the float32 copy of q/k and with one
  // pass for the rotated half, instead of transformers' op-by-op formulas.
  bool lean_elementwise = true;
  // The MLP's silu(gate) * up as one CUDA kernel forward and one backward (common/
  // fused_ops.h; CUDA builds and devices only) instead of ATen's three.
  bool fused_swiglu = true;
  // RoPE as one CUDA kernel each way instead of ATen's multiply, roll and addcmul (CUDA
  // builds and devices only; with lean_elementwise's rounding: float32, rounded once).
  bool fused_rope = true;
  // A decode step's attention (one position, every cached key visible) as one CUDA
  // kernel per layer instead of two batched matmuls and a softmax whose shapes (G = 4
  // query rows per KV head) cuBLAS serves with SIMT kernels (CUDA builds and devices).
  bool fused_decode_attention = true;
  // With a float32 residual stream: each block's output added to the stream by the CUDA
  // kernel that also computes the next RMSNorm, instead of ATen's add, norm and
  // conversion; with a gradient, one kernel for its backward too (CUDA builds and
  // devices).
  bool fused_residual_norm = true;

  // FP8 models only (--weights fp8; ignored elsewhere).
  Fp8Backward fp8_backward = Fp8Backward::kE4m3;
  // The FP8 matmuls accumulate in the tensor cores' own precision without cuBLAS's
  // periodic promotion to float32: faster, a little less exact over long sums.
  bool fp8_fast_accum = false;
};

}  // namespace llava
