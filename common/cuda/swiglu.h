// Launchers of the fused SwiGLU kernels (common/cuda/swiglu.cu): plain C++ declarations,
// so that callers need neither CUDA headers nor nvcc. Each launch is queued on `stream`
// (a cudaStream_t) and returns at once; pointers are device memory.
#pragma once

#include <cstdint>

namespace llava::cuda {

enum class ElementType { kFloat32, kFloat16, kBFloat16 };

// gate and up as [rows, cols] matrices whose rows are `ld` elements apart (ld == cols:
// contiguous; ld == 2 * cols and up == gate + cols: the two halves of one [rows, 2 * cols]
// gate_up projection).
struct SwiGluShape {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
};

// out [rows, cols] (contiguous) = silu(gate) * up, computed in float32 and rounded once.
void LaunchSwiGluForward(ElementType type, const void* gate, const void* up, void* out,
                         const SwiGluShape& shape, void* stream);

// The gradients of out = silu(gate) * up given grad_out [rows, cols] (contiguous), in one
// pass: grad_up = grad_out * silu(gate), grad_gate = grad_out * up * silu'(gate), written
// as [rows, cols] with rows `ld_grad` apart.
void LaunchSwiGluBackward(ElementType type, const void* grad_out, const void* gate, const void* up,
                          void* grad_gate, void* grad_up, const SwiGluShape& shape, int64_t ld_grad,
                          void* stream);

}  // namespace llava::cuda
