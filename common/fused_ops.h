// Fused elementwise operations of the Llama forward, with gradients: one CUDA kernel
// each way on a CUDA build and device, the plain ATen formulas otherwise. Stateless;
// kernels are queued on the current CUDA stream like any ATen op.
#pragma once

#include <ATen/ATen.h>

namespace llava {

// silu(gate) * up for gate, up [..., F] of one shape and dtype. Fused when `fused` is set
// and the tensors are on a CUDA device in float32, float16 or bfloat16 (this build must
// be a CUDA one); otherwise at::silu(gate) * up. Differentiable either way.
at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up, bool fused = true);

// Whether SwiGlu(gate, up) would run the fused kernel.
bool SwiGluIsFused(const at::Tensor& gate, const at::Tensor& up);

}  // namespace llava
