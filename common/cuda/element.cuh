// Helpers shared by the kernels in common/cuda: float32 arithmetic on float32, float16
// and bfloat16 elements (Load widens, Store rounds to nearest even once), 16-byte packs
// of elements, a block-wide sum or maximum, and the grid size of an elementwise launch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <initializer_list>

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

// kVec elements read or written as one access: 16 bytes where the buffers allow it.
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

// Whether every pointer may be read in 16-byte packs.
inline bool Aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// The sum or maximum (`op`, whose identity is `identity`) of v over the block's kThreads
// threads (a multiple of 32, at most 1024), in every thread. Every thread of the block
// calls it; it may be called again at once (the last barrier keeps the next call's
// writes from overtaking this call's reads).
template <int kThreads, typename Op>
__device__ __forceinline__ float BlockReduce(float v, Op op, float identity) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps, at most 32 of them");
  __shared__ float partial[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < kThreads / 32 ? partial[lane] : identity;
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  __syncthreads();
  return v;
}

// Blocks of `threads` for `work` items in a grid-stride loop: enough to fill every
// multiprocessor several times over; the loop covers the rest.
inline unsigned GridBlocks(int64_t work, int threads) {
  const int64_t want = (work + threads - 1) / threads;
  return static_cast<unsigned>(want < 65535 * 8 ? (want > 0 ? want : 1) : 65535 * 8);
}

}  // namespace llava::cuda
