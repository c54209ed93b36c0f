// Row-wise float8 quantization of activations (and of gradients, with the weight's row
// scales folded in) as one kernel per tensor instead of ATen's abs, amax, divide, clamp
// and cast, five passes and five launches for every linear layer's input. Reads and
// writes in packs of 16 input bytes where the buffers allow it: one element per access
// left most of the memory bandwidth unused.
#include "common/cuda/fp8_quant.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cuda/element.cuh"

namespace llava::cuda {
namespace {

constexpr int kThreads = 256;

template <Float8Type kOut>
__device__ __forceinline__ __nv_fp8_storage_t ToFloat8(float v) {
  return __nv_cvt_float_to_fp8(v, __NV_SATFINITE,
                               kOut == Float8Type::kE4m3 ? __NV_E4M3 : __NV_E5M2);
}

// Pack p of a row (kVec elements) widened to float32, times the column scales where given.
template <typename T, int kVec>
__device__ __forceinline__ void LoadScaled(const Pack<T, kVec>* row, const float* col_scale,
                                           int64_t p, float (&y)[kVec]) {
  const Pack<T, kVec> in = row[p];
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    y[k] = Load(in.v[k]) * (col_scale != nullptr ? col_scale[p * kVec + k] : 1.0f);
  }
}

// One block per row, kVec elements per access. The row is read twice, the second time
// from L2 (rows of Llama's widths are tens of kilobytes).
template <typename T, Float8Type kOut, int kVec>
__global__ void QuantizeRowsKernel(const T* __restrict__ x, const float* __restrict__ col_scale,
                                   __nv_fp8_storage_t* __restrict__ out,
                                   float* __restrict__ row_scale, int64_t cols, float fp8_max) {
  const int64_t row = blockIdx.x, packs = cols / kVec;
  const auto* in = reinterpret_cast<const Pack<T, kVec>*>(x + row * cols);
  auto* o = reinterpret_cast<Pack<__nv_fp8_storage_t, kVec>*>(out + row * cols);
  float amax = 0.0f;
  for (int64_t p = threadIdx.x; p < packs; p += kThreads) {
    float y[kVec];
    LoadScaled(in, col_scale, p, y);
#pragma unroll
    for (int k = 0; k < kVec; ++k) amax = fmaxf(amax, fabsf(y[k]));
  }
  amax = BlockReduce<kThreads>(amax, MaxOp(), 0.0f);
  const float scale = amax > 0.0f ? amax / fp8_max : 1.0f;
  const float inv = amax > 0.0f ? fp8_max / amax : 1.0f;
  if (threadIdx.x == 0) row_scale[row] = scale;
  for (int64_t p = threadIdx.x; p < packs; p += kThreads) {
    float y[kVec];
    LoadScaled(in, col_scale, p, y);
    Pack<__nv_fp8_storage_t, kVec> q;
#pragma unroll
    for (int k = 0; k < kVec; ++k) q.v[k] = ToFloat8<kOut>(y[k] * inv);
    o[p] = q;
  }
}

template <typename T, int kVec>
void LaunchKernel(Float8Type out_type, const T* x, const float* col_scale, __nv_fp8_storage_t* out,
                  float* row_scale, int64_t rows, int64_t cols, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(rows));
  if (out_type == Float8Type::kE4m3) {
    QuantizeRowsKernel<T, Float8Type::kE4m3, kVec>
        <<<grid, kThreads, 0, stream>>>(x, col_scale, out, row_scale, cols, 448.0f);
  } else {
    QuantizeRowsKernel<T, Float8Type::kE5m2, kVec>
        <<<grid, kThreads, 0, stream>>>(x, col_scale, out, row_scale, cols, 57344.0f);
  }
}

template <typename T>
void Launch(Float8Type out_type, const void* x, const float* col_scale, void* out, float* row_scale,
            int64_t rows, int64_t cols, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const T* in = static_cast<const T*>(x);
  auto* o = static_cast<__nv_fp8_storage_t*>(out);
  // Every row starts on a pack boundary when the first does and cols is a whole number of
  // packs (the output's packs are kVec bytes).
  if (cols % kVec == 0 && Aligned16({x}) && reinterpret_cast<uintptr_t>(out) % kVec == 0) {
    LaunchKernel<T, kVec>(out_type, in, col_scale, o, row_scale, rows, cols, stream);
  } else {
    LaunchKernel<T, 1>(out_type, in, col_scale, o, row_scale, rows, cols, stream);
  }
}

}  // namespace

void LaunchQuantizeRowsFloat8(ElementType type, Float8Type out_type, const void* x,
                              const float* col_scale, void* out, float* row_scale, int64_t rows,
                              int64_t cols, void* stream) {
  if (rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ElementType::kFloat32:
      return Launch<float>(out_type, x, col_scale, out, row_scale, rows, cols, s);
    case ElementType::kFloat16:
      return Launch<__half>(out_type, x, col_scale, out, row_scale, rows, cols, s);
    case ElementType::kBFloat16:
      return Launch<__nv_bfloat16>(out_type, x, col_scale, out, row_scale, rows, cols, s);
  }
}

}  // namespace llava::cuda
