// Launcher of the residual add + RMSNorm kernel (common/cuda/norm.cu): plain C++
// declarations, so that callers need neither CUDA headers nor nvcc. The launch is queued
// on `stream` (a cudaStream_t) and returns at once; pointers are device memory.
#pragma once

#include <cstdint>

#include "common/cuda/swiglu.h"  // ElementType

namespace llava::cuda {

// For each row r of h [rows, cols] float32 (row-major, updated in place): h[r] += x[r]
// (x [rows, cols] row-major in x_type; null: nothing added), then
// y[r] = h[r] * rsqrt(mean(h[r]^2) + eps) * weight (weight [cols] float32), computed in
// float32 and rounded once to y_type. One block per row.
void LaunchAddRmsNorm(ElementType x_type, ElementType y_type, float* h, const void* x,
                      const float* weight, void* y, int64_t rows, int64_t cols, float eps,
                      void* stream);

}  // namespace llava::cuda
