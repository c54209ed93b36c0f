// Launchers of the attention-side kernels (common/cuda/attention.cu): RoPE in one pass,
// and the attention of one query position over a KV cache. Plain C++ declarations, so
// that callers need neither CUDA headers nor nvcc; each launch is queued on `stream` (a
// cudaStream_t) and returns at once; pointers are device memory.
#pragma once

#include <cstdint>

#include "common/cuda/swiglu.h"  // ElementType

namespace llava::cuda {

// x [B, N, T, hd] (hd even, at most 512; B * N * T below 2^32) with element (b, n, t, d) at
// b*stride_b + n*stride_n + t*stride_t + d; out [B, N, T, hd] contiguous. out = x * cos + roll(x,
// hd/2) * sin_signed (float32 tables [T, hd]; sin_signed's first half negated: transformers'
// rotate_half), computed in float32 and rounded once to `out_type`. sign -1 negates sin_signed: the
// transpose, which is the backward.
struct RopeShape {
  int64_t b = 0, n = 0, t = 0, hd = 0;
  int64_t stride_b = 0, stride_n = 0, stride_t = 0;
};
void LaunchRope(ElementType in_type, ElementType out_type, const void* x, const RopeShape& shape,
                const float* cos, const float* sin_signed, float sign, void* out, void* stream);

// Attention of G queries per KV head at one position: q [R, G, hd] contiguous, keys and
// values [R, S, hd] with row r at r*kv_stride (a KV cache's [B, Hkv, capacity, hd] read in
// place: R = B*Hkv), every key visible; out [R, G, hd] = softmax(q k^T * scale) v, in
// float32 arithmetic, in `type` like q, k and v. Needs 16-byte aligned rows, and S within
// DecodeAttentionMaxKeys.
void LaunchDecodeAttention(ElementType type, const void* q, const void* k, const void* v,
                           int64_t rows, int64_t groups, int64_t keys, int64_t hd,
                           int64_t kv_stride, float scale, void* out, void* stream);

// The largest S LaunchDecodeAttention takes for `groups` queries per KV head of `hd`
// dimensions: 0 unless groups <= 16 and hd is a multiple of 4 up to 256 (its shared
// memory holds the queries, each warp's partial output and the scores).
int64_t DecodeAttentionMaxKeys(int64_t groups, int64_t hd);

}  // namespace llava::cuda
