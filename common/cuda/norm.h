// Launchers of the residual add + RMSNorm kernels (common/cuda/norm.cu): plain C++
// declarations, so that callers need neither CUDA headers nor nvcc. Each launch is queued
// on `stream` (a cudaStream_t) and returns at once; pointers are device memory, matrices
// [rows, cols] row-major.
#pragma once

#include <cstdint>

#include "common/cuda/swiglu.h"  // ElementType

namespace llava::cuda {

struct AddRmsNormArgs {
  const float* h = nullptr;  // the residual stream, float32
  const void* x = nullptr;   // added to it, in x_type; null: nothing added
  ElementType x_type = ElementType::kFloat32;
  float* h_out = nullptr;         // where h + x goes (h itself: in place); null only without x
  const float* weight = nullptr;  // [cols] float32
  void* y = nullptr;              // the norm, in y_type
  ElementType y_type = ElementType::kFloat32;
  float* rstd = nullptr;  // [rows]: rsqrt(mean(s^2) + eps) per row, for the backward; may be null
  int64_t rows = 0;
  int64_t cols = 0;
  float eps = 0.0f;
};

// For each row: s = h + x (written to h_out), y = s * rsqrt(mean(s^2) + eps) * weight,
// computed in float32 and rounded once to y_type. One block per row.
void LaunchAddRmsNorm(const AddRmsNormArgs& args, void* stream);

// The gradient at s of y = s * rstd * weight (s [rows, cols] float32, rstd [rows] as the
// forward wrote it) given dy (in dy_type), plus dh_in (float32; null: none):
// dh = rstd * (weight * dy - s * rstd * mean(weight * dy * s * rstd)) + dh_in, in float32.
void LaunchRmsNormBackward(ElementType dy_type, const void* dy, const float* dh_in, const float* h,
                           const float* weight, const float* rstd, float* dh, int64_t rows,
                           int64_t cols, void* stream);

}  // namespace llava::cuda
