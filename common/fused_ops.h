// Fused operations of the Llama forward, with gradients: one CUDA kernel (or cuBLAS
// call) each way on a CUDA build and device, plain ATen formulas otherwise. Stateless;
// kernels are queued on the current CUDA stream like any ATen op.
#pragma once

#include <ATen/ATen.h>

#include "common/cuda/swiglu.h"  // ElementType (plain C++)

namespace llava {

// silu(gate) * up for gate, up [..., F] of one shape and dtype. Fused when `fused` is set
// and the tensors are on a CUDA device in float32, float16 or bfloat16 (this build must
// be a CUDA one); otherwise at::silu(gate) * up. Differentiable either way.
at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up, bool fused = true);

// Whether SwiGlu(gate, up) would run the fused kernel.
bool SwiGluIsFused(const at::Tensor& gate, const at::Tensor& up);

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
