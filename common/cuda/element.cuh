// Helpers shared by the kernels in common/cuda: float32 arithmetic on float32, float16
// and bfloat16 elements (Load widens, Store rounds to nearest even once), and the grid
// size of an elementwise launch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace llava::cuda {

__device__ __forceinline__ float Load(float x) { return x; }
__device__ __forceinline__ float Load(__half x) { return __half2float(x); }
__device__ __forceinline__ float Load(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T Store(float x);
template <>
__device__ __forceinline__ float Store(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half Store(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 Store(float x) {
  return __float2bfloat16_rn(x);
}

// Blocks of `threads` for `work` items in a grid-stride loop: enough to fill every
// multiprocessor several times over; the loop covers the rest.
inline unsigned GridBlocks(int64_t work, int threads) {
  const int64_t want = (work + threads - 1) / threads;
  return static_cast<unsigned>(want < 65535 * 8 ? (want > 0 ? want : 1) : 65535 * 8);
}

}  // namespace llava::cuda
