// The residual stream's add and the next RMSNorm as one pass over each row (ATen: an add,
// the norm's kernel and a conversion to the model dtype, three launches and seven
// passes over the row), and its gradient as one more (ATen: the norm's backward kernel,
// a conversion and the add of the stream's own gradient).
#include "common/cuda/norm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "common/cuda/element.cuh"

namespace llava::cuda {
namespace {

constexpr int kThreads = 256;

// Pack p of a row as float32 (a null row reads as zeros).
template <typename T, int kVec>
__device__ __forceinline__ void LoadPack(const T* row, int64_t p, float (&v)[kVec]) {
  if (row == nullptr) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = 0.0f;
    return;
  }
  const Pack<T, kVec> in = reinterpret_cast<const Pack<T, kVec>*>(row)[p];
#pragma unroll
  for (int k = 0; k < kVec; ++k) v[k] = Load(in.v[k]);
}

template <typename T, int kVec>
__device__ __forceinline__ void StorePack(T* row, int64_t p, const float (&v)[kVec]) {
  Pack<T, kVec> out;
#pragma unroll
  for (int k = 0; k < kVec; ++k) out.v[k] = Store<T>(v[k]);
  reinterpret_cast<Pack<T, kVec>*>(row)[p] = out;
}

// One block per row. The sum is written to h_out (which may be h itself) where there is
// one, and read back from there (L2, just written) to normalize; without x, h_out is null
// and h is read twice.
template <typename TX, typename TY, int kVec>
__global__ void AddRmsNormKernel(const float* h, const TX* __restrict__ x, float* h_out,
                                 const float* __restrict__ weight, TY* __restrict__ y,
                                 float* __restrict__ rstd, int64_t cols, float eps) {
  const int64_t row = blockIdx.x, packs = cols / kVec;
  const float* hr = h + row * cols;
  const TX* xr = x != nullptr ? x + row * cols : nullptr;
  float* hw = h_out != nullptr ? h_out + row * cols : nullptr;
  float sumsq = 0.0f;
  for (int64_t p = threadIdx.x; p < packs; p += kThreads) {
    float v[kVec], a[kVec];
    LoadPack(hr, p, v);
    LoadPack(xr, p, a);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      v[k] += a[k];
      sumsq += v[k] * v[k];
    }
    if (hw != nullptr) StorePack(hw, p, v);
  }
  const float inv = rsqrtf(BlockReduce<kThreads>(sumsq, SumOp(), 0.0f) / cols + eps);
  if (rstd != nullptr && threadIdx.x == 0) rstd[row] = inv;
  const float* hn = hw != nullptr ? hw : hr;
  TY* yr = y + row * cols;
  for (int64_t p = threadIdx.x; p < packs; p += kThreads) {
    float v[kVec], w[kVec];
    LoadPack(hn, p, v);
    LoadPack(weight, p, w);
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] *= inv * w[k];
    StorePack(yr, p, v);
  }
}

// dh = rstd * (w * dy - xhat * mean(w * dy * xhat)) + dh_in, xhat = h * rstd: the
// gradient of y = xhat * w at the sum h, plus what reached h directly (null: none).
template <typename TY, int kVec>
__global__ void RmsNormBackwardKernel(const TY* __restrict__ dy, const float* __restrict__ dh_in,
                                      const float* __restrict__ h, const float* __restrict__ weight,
                                      const float* __restrict__ rstd, float* __restrict__ dh,
                                      int64_t cols) {
  const int64_t row = blockIdx.x, packs = cols / kVec;
  const TY* dyr = dy + row * cols;
  const float* hr = h + row * cols;
  const float* dir = dh_in != nullptr ? dh_in + row * cols : nullptr;
  const float r = rstd[row];
  float dot = 0.0f;
  for (int64_t p = threadIdx.x; p < packs; p += kThreads) {
    float g[kVec], v[kVec], w[kVec];
    LoadPack(dyr, p, g);
    LoadPack(hr, p, v);
    LoadPack(weight, p, w);
#pragma unroll
    for (int k = 0; k < kVec; ++k) dot += g[k] * w[k] * v[k] * r;
  }
  const float mean = BlockReduce<kThreads>(dot, SumOp(), 0.0f) / cols;
  float* out = dh + row * cols;
  for (int64_t p = threadIdx.x; p < packs; p += kThreads) {
    float g[kVec], v[kVec], w[kVec], d[kVec];
    LoadPack(dyr, p, g);
    LoadPack(hr, p, v);
    LoadPack(weight, p, w);
    LoadPack(dir, p, d);
#pragma unroll
    for (int k = 0; k < kVec; ++k) d[k] += r * (g[k] * w[k] - v[k] * r * mean);
    StorePack(out, p, d);
  }
}

// Packs of 4 elements (16 bytes of float32) where every row starts on one.
bool Vec4(int64_t cols, std::initializer_list<const void*> ptrs) {
  return cols % 4 == 0 && Aligned16(ptrs);
}

template <typename TX, typename TY>
void AddRmsNormTyped(const AddRmsNormArgs& a, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(a.rows);
  const auto* x = static_cast<const TX*>(a.x);
  auto* y = static_cast<TY*>(a.y);
  const float eps = a.eps;
  if (Vec4(a.cols, {a.h, a.x, a.h_out, a.weight, a.y})) {
    AddRmsNormKernel<TX, TY, 4>
        <<<blocks, kThreads, 0, stream>>>(a.h, x, a.h_out, a.weight, y, a.rstd, a.cols, eps);
  } else {
    AddRmsNormKernel<TX, TY, 1>
        <<<blocks, kThreads, 0, stream>>>(a.h, x, a.h_out, a.weight, y, a.rstd, a.cols, eps);
  }
}

template <typename TX>
void AddRmsNormTo(const AddRmsNormArgs& a, cudaStream_t stream) {
  switch (a.y_type) {
    case ElementType::kFloat32:
      return AddRmsNormTyped<TX, float>(a, stream);
    case ElementType::kFloat16:
      return AddRmsNormTyped<TX, __half>(a, stream);
    case ElementType::kBFloat16:
      return AddRmsNormTyped<TX, __nv_bfloat16>(a, stream);
  }
}

template <typename TY>
void BackwardTyped(const void* dy, const float* dh_in, const float* h, const float* weight,
                   const float* rstd, float* dh, int64_t rows, int64_t cols, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(rows);
  const auto* g = static_cast<const TY*>(dy);
  if (Vec4(cols, {dy, dh_in, h, weight, dh})) {
    RmsNormBackwardKernel<TY, 4>
        <<<blocks, kThreads, 0, stream>>>(g, dh_in, h, weight, rstd, dh, cols);
  } else {
    RmsNormBackwardKernel<TY, 1>
        <<<blocks, kThreads, 0, stream>>>(g, dh_in, h, weight, rstd, dh, cols);
  }
}

}  // namespace

void LaunchAddRmsNorm(const AddRmsNormArgs& args, void* stream) {
  if (args.rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  switch (args.x_type) {
    case ElementType::kFloat32:
      return AddRmsNormTo<float>(args, s);
    case ElementType::kFloat16:
      return AddRmsNormTo<__half>(args, s);
    case ElementType::kBFloat16:
      return AddRmsNormTo<__nv_bfloat16>(args, s);
  }
}

void LaunchRmsNormBackward(ElementType dy_type, const void* dy, const float* dh_in, const float* h,
                           const float* weight, const float* rstd, float* dh, int64_t rows,
                           int64_t cols, void* stream) {
  if (rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dy_type) {
    case ElementType::kFloat32:
      return BackwardTyped<float>(dy, dh_in, h, weight, rstd, dh, rows, cols, s);
    case ElementType::kFloat16:
      return BackwardTyped<__half>(dy, dh_in, h, weight, rstd, dh, rows, cols, s);
    case ElementType::kBFloat16:
      return BackwardTyped<__nv_bfloat16>(dy, dh_in, h, weight, rstd, dh, rows, cols, s);
  }
}

}  // namespace llava::cuda
