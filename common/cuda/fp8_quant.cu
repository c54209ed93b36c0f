// Row-wise float8 quantization of activations (and of gradients, with the weight's row
// scales folded in) as one kernel per tensor instead of ATen's abs, amax, divide, clamp
// and cast, five passes and five launches for every linear layer's input.
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

// The largest magnitude over the block's threads, in every thread.
__device__ float BlockMax(float v) {
  __shared__ float warp_max[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  v = lane < kThreads / 32 ? warp_max[lane] : 0.0f;
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

template <typename T, Float8Type kOut>
__global__ void QuantizeRowsKernel(const T* __restrict__ x, const float* __restrict__ col_scale,
                                   __nv_fp8_storage_t* __restrict__ out,
                                   float* __restrict__ row_scale, int64_t cols, float fp8_max) {
  const int64_t row = blockIdx.x;
  const T* in = x + row * cols;
  __nv_fp8_storage_t* o = out + row * cols;
  float amax = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float y = Load(in[c]) * (col_scale != nullptr ? col_scale[c] : 1.0f);
    amax = fmaxf(amax, fabsf(y));
  }
  amax = BlockMax(amax);
  const float scale = amax > 0.0f ? amax / fp8_max : 1.0f;
  const float inv = amax > 0.0f ? fp8_max / amax : 1.0f;
  if (threadIdx.x == 0) row_scale[row] = scale;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float y = Load(in[c]) * (col_scale != nullptr ? col_scale[c] : 1.0f);
    o[c] = ToFloat8<kOut>(y * inv);
  }
}

template <typename T>
void Launch(Float8Type out_type, const void* x, const float* col_scale, void* out, float* row_scale,
            int64_t rows, int64_t cols, cudaStream_t stream) {
  const T* in = static_cast<const T*>(x);
  auto* o = static_cast<__nv_fp8_storage_t*>(out);
  const dim3 grid(static_cast<unsigned>(rows));
  if (out_type == Float8Type::kE4m3) {
    QuantizeRowsKernel<T, Float8Type::kE4m3>
        <<<grid, kThreads, 0, stream>>>(in, col_scale, o, row_scale, cols, 448.0f);
  } else {
    QuantizeRowsKernel<T, Float8Type::kE5m2>
        <<<grid, kThreads, 0, stream>>>(in, col_scale, o, row_scale, cols, 57344.0f);
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
