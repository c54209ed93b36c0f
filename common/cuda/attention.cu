// RoPE as one pass (ATen's lean formula is a multiply, a roll and an addcmul: three
// launches and three round trips through memory, each way), and the attention of one
// query position over a KV cache as one block per KV head and row: the batched matmuls
// it replaces have G = 4 query rows per head, shapes cuBLAS serves with SIMT kernels.
#include "common/cuda/attention.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "common/cuda/element.cuh"

namespace llava::cuda {
namespace {

// One thread per pair (d, d + hd/2) of one position of one head, both read once and
// written once; a block covers whole rows (b, n, t), indexed in 32 bits (the launcher
// checks the sizes).
template <typename TIn, typename TOut>
__global__ void RopeKernel(const TIn* __restrict__ x, RopeShape sh, const float* __restrict__ cos,
                           const float* __restrict__ sin_signed, float sign, TOut* __restrict__ out,
                           uint32_t rows) {
  const uint32_t half = static_cast<uint32_t>(sh.hd / 2);
  const uint32_t row = blockIdx.x * (blockDim.x / half) + threadIdx.x / half;  // (b, n, t)
  const uint32_t d = threadIdx.x % half;
  if (row >= rows) return;
  const uint32_t nt = static_cast<uint32_t>(sh.t), nn = static_cast<uint32_t>(sh.n);
  const uint32_t t = row % nt, n = (row / nt) % nn, b = row / (nt * nn);
  const TIn* in = x + b * sh.stride_b + n * sh.stride_n + t * sh.stride_t;
  const float x0 = Load(in[d]), x1 = Load(in[d + half]);
  const float* c = cos + t * sh.hd;
  const float* s = sin_signed + t * sh.hd;
  TOut* o = out + static_cast<int64_t>(row) * sh.hd;
  o[d] = Store<TOut>(x0 * c[d] + x1 * (sign * s[d]));
  o[d + half] = Store<TOut>(x1 * c[d + half] + x0 * (sign * s[d + half]));
}

constexpr int kAttnThreads = 128;
constexpr int kAttnWarps = kAttnThreads / 32;
constexpr int kMaxGroups = 16;
constexpr int64_t kAttnSharedBytes = 48 * 1024;
constexpr int64_t kMaxHeadDim = 256;
// Keys each warp loads before it computes with them: enough loads in flight to cover
// the memory's latency.
constexpr int kKeysInFlight = 4;

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Four consecutive elements (16 bytes of float32, 8 of a half type), aligned.
__device__ __forceinline__ void Load4(const float* p, float (&o)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  o[0] = v.x;
  o[1] = v.y;
  o[2] = v.z;
  o[3] = v.w;
}
// A half type's four elements as one 8-byte load.
template <typename T>
__device__ __forceinline__ void Load4(const T* p, float (&o)[4]) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int j = 0; j < 4; ++j) o[j] = Load(e[j]);
}

// Dimensions d0 .. d0+3 of the rows s0, s0 + kAttnWarps, ... (kKeysInFlight of them) of
// `rows` [S, hd]; zeros past the last.
template <typename T>
__device__ __forceinline__ void LoadRows(const T* rows, int s0, int keys, int hd, int d0,
                                         float (&out)[kKeysInFlight][4]) {
#pragma unroll
  for (int u = 0; u < kKeysInFlight; ++u) {
    const int s = s0 + u * kAttnWarps;
    if (s < keys) {
      Load4(rows + static_cast<int64_t>(s) * hd + d0, out[u]);
    } else {
      out[u][0] = out[u][1] = out[u][2] = out[u][3] = 0.0f;
    }
  }
}

// Block r: q[r] [G, hd] against keys and values [S, hd] at r * kv_stride; at most kG
// queries. Shared memory: q as float32 [G, hd] (then, for the output, each warp's
// partial sums [kAttnWarps][G, hd]), and the scores [G, S] (probabilities after the
// softmax). Lane l of a warp works on dimensions 4l .. 4l+3 (+128, ...).
template <typename T, int kG>
__global__ void DecodeAttentionKernel(const T* __restrict__ q, const T* __restrict__ k,
                                      const T* __restrict__ v, int groups, int keys, int hd,
                                      int64_t kv_stride, float scale, T* __restrict__ out) {
  extern __shared__ float shared[];
  float* work = shared;                               // q, then the partial outputs
  float* scores = shared + kAttnWarps * groups * hd;  // [G, S]
  const int64_t r = blockIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const T* qr = q + r * groups * hd;
  for (int i = threadIdx.x; i < groups * hd; i += kAttnThreads) work[i] = Load(qr[i]);
  __syncthreads();

  // Scores: each warp kKeysInFlight keys at a time, one warp sum per key and query.
  const T* kr = k + r * kv_stride;
  for (int s0 = warp; s0 < keys; s0 += kAttnWarps * kKeysInFlight) {
    float part[kKeysInFlight][kG];
#pragma unroll
    for (int u = 0; u < kKeysInFlight; ++u) {
#pragma unroll
      for (int g = 0; g < kG; ++g) part[u][g] = 0.0f;
    }
    for (int d0 = lane * 4; d0 < hd; d0 += 128) {
      float kv[kKeysInFlight][4];
      LoadRows(kr, s0, keys, hd, d0, kv);
#pragma unroll
      for (int g = 0; g < kG; ++g) {
        if (g < groups) {
          const float* qg = work + g * hd + d0;
#pragma unroll
          for (int u = 0; u < kKeysInFlight; ++u) {
            part[u][g] += qg[0] * kv[u][0] + qg[1] * kv[u][1] + qg[2] * kv[u][2] + qg[3] * kv[u][3];
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kKeysInFlight; ++u) {
      const int s = s0 + u * kAttnWarps;
#pragma unroll
      for (int g = 0; g < kG; ++g) {
        if (g < groups) {
          const float sum = WarpSum(part[u][g]);
          if (lane == 0 && s < keys) scores[g * keys + s] = sum * scale;
        }
      }
    }
  }
  __syncthreads();

  // Softmax of each query's scores: a warp per query.
  for (int g = warp; g < groups; g += kAttnWarps) {
    float* row = scores + g * keys;
    float m = -INFINITY;
    for (int s = lane; s < keys; s += 32) m = fmaxf(m, row[s]);
    m = WarpMax(m);
    float sum = 0.0f;
    for (int s = lane; s < keys; s += 32) {
      const float e = __expf(row[s] - m);
      row[s] = e;
      sum += e;
    }
    const float inv = 1.0f / WarpSum(sum);
    for (int s = lane; s < keys; s += 32) row[s] *= inv;
  }
  __syncthreads();

  // Output: warp w sums the keys w, w + 4, ... for every query and its lane's dimensions,
  // each value row read once; then the warps' partial sums are added.
  const T* vr = v + r * kv_stride;
  float* partial = work + warp * groups * hd;
  for (int d0 = lane * 4; d0 < hd; d0 += 128) {
    float acc[kG][4];
#pragma unroll
    for (int g = 0; g < kG; ++g) acc[g][0] = acc[g][1] = acc[g][2] = acc[g][3] = 0.0f;
    for (int s0 = warp; s0 < keys; s0 += kAttnWarps * kKeysInFlight) {
      float x[kKeysInFlight][4];
      LoadRows(vr, s0, keys, hd, d0, x);
#pragma unroll
      for (int u = 0; u < kKeysInFlight; ++u) {
        const int s = s0 + u * kAttnWarps;
        if (s < keys) {
#pragma unroll
          for (int g = 0; g < kG; ++g) {
            if (g < groups) {
              const float p = scores[g * keys + s];
#pragma unroll
              for (int j = 0; j < 4; ++j) acc[g][j] += p * x[u][j];
            }
          }
        }
      }
    }
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      if (g < groups) {
#pragma unroll
        for (int j = 0; j < 4; ++j) partial[g * hd + d0 + j] = acc[g][j];
      }
    }
  }
  __syncthreads();
  T* outr = out + r * groups * hd;
  for (int i = threadIdx.x; i < groups * hd; i += kAttnThreads) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) sum += work[w * groups * hd + i];
    outr[i] = Store<T>(sum);
  }
}

template <typename TIn, typename TOut>
void Rope(const void* x, const RopeShape& sh, const float* cos, const float* sin_signed, float sign,
          void* out, cudaStream_t stream) {
  const int half = static_cast<int>(sh.hd / 2);
  const int threads = (256 / half) * half;  // whole rows per block
  const int64_t rows = sh.b * sh.n * sh.t;
  const int64_t rows_per_block = threads / half;
  const auto blocks = static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
  RopeKernel<TIn, TOut><<<blocks, threads, 0, stream>>>(static_cast<const TIn*>(x), sh, cos,
                                                        sin_signed, sign, static_cast<TOut*>(out),
                                                        static_cast<uint32_t>(rows));
}

template <typename TIn>
void RopeTo(ElementType out_type, const void* x, const RopeShape& sh, const float* cos,
            const float* sin_signed, float sign, void* out, cudaStream_t stream) {
  switch (out_type) {
    case ElementType::kFloat32:
      return Rope<TIn, float>(x, sh, cos, sin_signed, sign, out, stream);
    case ElementType::kFloat16:
      return Rope<TIn, __half>(x, sh, cos, sin_signed, sign, out, stream);
    case ElementType::kBFloat16:
      return Rope<TIn, __nv_bfloat16>(x, sh, cos, sin_signed, sign, out, stream);
  }
}

size_t DecodeAttentionShared(int64_t groups, int64_t keys, int64_t hd) {
  return static_cast<size_t>(groups * (kAttnWarps * hd + keys)) * sizeof(float);
}

template <typename T, int kG>
void DecodeAttentionOf(const void* q, const void* k, const void* v, int64_t rows, int64_t groups,
                       int64_t keys, int64_t hd, int64_t kv_stride, float scale, void* out,
                       cudaStream_t stream) {
  DecodeAttentionKernel<T, kG>
      <<<static_cast<unsigned>(rows), kAttnThreads, DecodeAttentionShared(groups, keys, hd),
         stream>>>(static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                   static_cast<int>(groups), static_cast<int>(keys), static_cast<int>(hd),
                   kv_stride, scale, static_cast<T*>(out));
}

// The kernel for the fewest registers that hold `groups` queries.
template <typename T>
void DecodeAttention(const void* q, const void* k, const void* v, int64_t rows, int64_t groups,
                     int64_t keys, int64_t hd, int64_t kv_stride, float scale, void* out,
                     cudaStream_t stream) {
  if (groups <= 4) {
    DecodeAttentionOf<T, 4>(q, k, v, rows, groups, keys, hd, kv_stride, scale, out, stream);
  } else if (groups <= 8) {
    DecodeAttentionOf<T, 8>(q, k, v, rows, groups, keys, hd, kv_stride, scale, out, stream);
  } else {
    DecodeAttentionOf<T, kMaxGroups>(q, k, v, rows, groups, keys, hd, kv_stride, scale, out,
                                     stream);
  }
}

}  // namespace

void LaunchRope(ElementType in_type, ElementType out_type, const void* x, const RopeShape& shape,
                const float* cos, const float* sin_signed, float sign, void* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (in_type) {
    case ElementType::kFloat32:
      return RopeTo<float>(out_type, x, shape, cos, sin_signed, sign, out, s);
    case ElementType::kFloat16:
      return RopeTo<__half>(out_type, x, shape, cos, sin_signed, sign, out, s);
    case ElementType::kBFloat16:
      return RopeTo<__nv_bfloat16>(out_type, x, shape, cos, sin_signed, sign, out, s);
  }
}

int64_t DecodeAttentionMaxKeys(int64_t groups, int64_t hd) {
  if (groups <= 0 || groups > kMaxGroups || hd <= 0 || hd > kMaxHeadDim || hd % 4 != 0) return 0;
  const int64_t floats = kAttnSharedBytes / static_cast<int64_t>(sizeof(float));
  return std::max<int64_t>(0, (floats - groups * kAttnWarps * hd) / groups);
}

void LaunchDecodeAttention(ElementType type, const void* q, const void* k, const void* v,
                           int64_t rows, int64_t groups, int64_t keys, int64_t hd,
                           int64_t kv_stride, float scale, void* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ElementType::kFloat32:
      return DecodeAttention<float>(q, k, v, rows, groups, keys, hd, kv_stride, scale, out, s);
    case ElementType::kFloat16:
      return DecodeAttention<__half>(q, k, v, rows, groups, keys, hd, kv_stride, scale, out, s);
    case ElementType::kBFloat16:
      return DecodeAttention<__nv_bfloat16>(q, k, v, rows, groups, keys, hd, kv_stride, scale, out,
                                            s);
  }
}

}  // namespace llava::cuda
