// Launchers of the fused SwiGLU kernels (common/cuda/swiglu.cu): plain C++ declarations,
// so that callers need neither CUDA headers nor nvcc. Each launch is queued on `stream`
// (a cudaStream_t) and returns at once; pointers are device memory of n elements.
#pragma once

#include <cstdint>

namespace llava::cuda {

enum class ElementType { kFloat32, kFloat16, kBFloat16 };

// out = silu(gate) * up, computed in float32 and rounded once.
void LaunchSwiGluForward(ElementType type, const void* gate, const void* up, void* out, int64_t n,
                         void* stream);

// The gradients of out = silu(gate) * up given grad_out, in one pass:
// grad_up = grad_out * silu(gate), grad_gate = grad_out * up * silu'(gate).
void LaunchSwiGluBackward(ElementType type, const void* grad_out, const void* gate, const void* up,
                          void* grad_gate, void* grad_up, int64_t n, void* stream);

}  // namespace llava::cuda
