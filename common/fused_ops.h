// Fused operations of the Llama forward: one CUDA kernel (or cuBLAS call) each way on a
// CUDA build and device, with gradients (SwiGLU, RoPE, the residual add with the next
// norm, the float32-output linear), or forward only where no gradient is ever asked (a
// decode step's attention), each with an *IsFused check that says when it applies; plain
// ATen formulas otherwise (the caller's fallback). Stateless; kernels are queued on the
// current CUDA stream like any ATen op.
#pragma once

#include <ATen/ATen.h>

#include "common/cuda/swiglu.h"  // ElementType (plain C++)

namespace llava {

// silu(gate) * up for gate, up [..., F] of one shape and dtype. Fused when `fused` is set
// and the tensors are on a CUDA device in float32, float16 or bfloat16 (this build must
// be a CUDA one); otherwise at::silu(gate) * up. Differentiable either way.
at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up, bool fused = true);

// SwiGlu of the two halves of gate_up [..., 2F] (gate first): one projection that wrote
// both. The fused kernel reads them in place and writes gate_up's gradient whole.
at::Tensor SwiGluPacked(const at::Tensor& gate_up, bool fused = true);

// Whether SwiGlu(gate, up) would run the fused kernel.
bool SwiGluIsFused(const at::Tensor& gate, const at::Tensor& up);

// RoPE of x [B, N, T, hd] (any strides with the last dimension contiguous; float32,
// float16 or bfloat16; hd even up to 512) by float32 tables cos and sin_signed [T, hd] whose two
// halves are equal but for sin_signed's sign (transformers' rotate_half): x * cos + roll(x, hd/2) *
// sin_signed in float32, rounded once to x's dtype, as [B, N, T, hd] contiguous. One CUDA
// kernel each way (the backward is the same rotation by -sin); differentiable in x.
at::Tensor RopeFused(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin_signed);

// Whether RopeFused takes these tensors (a CUDA build and device, the dtypes above).
bool RopeIsFused(const at::Tensor& x, const at::Tensor& cos);

// The attention of G query heads per KV head at one position, every key visible:
// q [B, Hkv, G, hd]; k, v [B, Hkv, S, hd] as a KV cache holds them (rows of hd
// contiguous, heads `capacity` rows apart: a narrowed cache is read in place) ->
// softmax(q k^T * scale) v [B, Hkv, G, hd], in float32 arithmetic, in q's dtype. One
// kernel; no gradient (decoding runs without one).
at::Tensor DecodeAttentionFused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                double scale);

// Whether DecodeAttentionFused takes these tensors: a CUDA build and device, one dtype
// (float32, float16, bfloat16), the layouts above with 16-byte aligned keys and values,
// hd a multiple of 4 up to 256, G up to 16, S within the kernel's shared memory
// (cuda::DecodeAttentionMaxKeys), and no gradient asked.
bool DecodeAttentionIsFused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The residual stream's step and the next RMSNorm in one pass: h [..., D] float32
// (contiguous) becomes h + x (x of h's shape, contiguous, float32 or a half dtype;
// undefined: nothing added), and the result is h * rsqrt(mean(h^2) + eps) * weight ([D]
// float32, frozen) in `out_dtype`, computed in float32 and rounded once. Without a
// gradient h is updated in place; where one is recorded (grad mode on and h or x
// requiring it), h is replaced by the sum as a new tensor, and the sum and the result are
// differentiable in h and x (one kernel each way, the gradient summed in float32).
at::Tensor AddRmsNorm(at::Tensor& h, const at::Tensor& x, const at::Tensor& weight, double eps,
                      at::ScalarType out_dtype);

// Whether AddRmsNorm takes these tensors: a CUDA build and device and the dtypes and
// layouts above.
bool AddRmsNormIsFused(const at::Tensor& h, const at::Tensor& weight);

// x [..., K] times weight [N, K] transposed -> [..., N] in float32, for x and weight of
// one half dtype (bfloat16 or float16): the products summed in float32 as any half
// matmul sums them, the sum written without rounding it to the half dtype. On CUDA with
// torch >= 2.9 one cuBLAS call (at::mm's out_dtype); on CUDA before 2.9 the half matmul
// rounded, then upcast (warned once: the precision is transformers'); on the CPU through
// float32 copies (slow at 8B, exact). Differentiable in x (the weight is frozen); x's gradient is a
// half matmul of the float32 incoming gradient rounded to x's dtype.
at::Tensor LinearFloat32Out(const at::Tensor& x, const at::Tensor& weight);

#ifdef LLAVA_HAVE_CUDA
// The kernels' element type of a float32, float16 or bfloat16 tensor (float32 for any
// other: callers pass those three).
cuda::ElementType ElementTypeOf(const at::Tensor& t);
#endif

}  // namespace llava
