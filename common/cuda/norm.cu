// The residual stream's add and the next RMSNorm as one pass over each row (ATen: an add,
// the norm's kernel and a conversion to the model dtype, three launches and seven
// passes over the row), for passes without a gradient (decoding, evaluation).
#include "common/cuda/norm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/cuda/element.cuh"

namespace llava::cuda {
namespace {

constexpr int kThreads = 256;

// The sum over the block's threads, in every thread.
__device__ float BlockSum(float v) {
  __shared__ float warp_sum[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sum[warp] = v;
  __syncthreads();
  v = lane < kThreads / 32 ? warp_sum[lane] : 0.0f;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The row is read once to add and sum its squares, and once more (from L2, just written)
// to normalize.
template <typename TX, typename TY>
__global__ void AddRmsNormKernel(float* __restrict__ h, const TX* __restrict__ x,
                                 const float* __restrict__ weight, TY* __restrict__ y, int64_t cols,
                                 float eps) {
  const int64_t row = blockIdx.x;
  float* hr = h + row * cols;
  const TX* xr = x != nullptr ? x + row * cols : nullptr;
  float sumsq = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float v = hr[c] + (xr != nullptr ? Load(xr[c]) : 0.0f);
    if (xr != nullptr) hr[c] = v;
    sumsq += v * v;
  }
  const float inv = rsqrtf(BlockSum(sumsq) / static_cast<float>(cols) + eps);
  TY* yr = y + row * cols;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    yr[c] = Store<TY>(hr[c] * inv * weight[c]);
  }
}

template <typename TX>
void AddRmsNormTo(ElementType y_type, float* h, const void* x, const float* weight, void* y,
                  int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(rows);
  const TX* xt = static_cast<const TX*>(x);
  switch (y_type) {
    case ElementType::kFloat32:
      return AddRmsNormKernel<TX, float>
          <<<blocks, kThreads, 0, stream>>>(h, xt, weight, static_cast<float*>(y), cols, eps);
    case ElementType::kFloat16:
      return AddRmsNormKernel<TX, __half>
          <<<blocks, kThreads, 0, stream>>>(h, xt, weight, static_cast<__half*>(y), cols, eps);
    case ElementType::kBFloat16:
      return AddRmsNormKernel<TX, __nv_bfloat16><<<blocks, kThreads, 0, stream>>>(
          h, xt, weight, static_cast<__nv_bfloat16*>(y), cols, eps);
  }
}

}  // namespace

void LaunchAddRmsNorm(ElementType x_type, ElementType y_type, float* h, const void* x,
                      const float* weight, void* y, int64_t rows, int64_t cols, float eps,
                      void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (x_type) {
    case ElementType::kFloat32:
      return AddRmsNormTo<float>(y_type, h, x, weight, y, rows, cols, eps, s);
    case ElementType::kFloat16:
      return AddRmsNormTo<__half>(y_type, h, x, weight, y, rows, cols, eps, s);
    case ElementType::kBFloat16:
      return AddRmsNormTo<__nv_bfloat16>(y_type, h, x, weight, y, rows, cols, eps, s);
  }
}

}  // namespace llava::cuda
