// The row-wise FP8 quantization kernel (common/cuda/fp8_quant.cu) three ways, timed side
// by side on Llama-8B's row widths: one element per access (the kernel before packs), 16-byte
// packs in a loop (the kernel now), and each thread's packs held in registers between the
// row's maximum and its conversion (one read of the row instead of two). A measurement
// harness, not product code: it answers whether the kernel was far from the memory's
// bandwidth (bench/RESULTS.md, "FP8 training past 1,600").
//   nvcc -std=c++17 -O3 -I. -arch=sm_90 bench/kernels/quantize_rows_variants.cu -o /tmp/qv &&
//   /tmp/qv
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cstdio>
#include <cstdint>
#include "common/cuda/element.cuh"
using namespace llava::cuda;

__device__ __forceinline__ __nv_fp8_storage_t ToF8(float v) {
  return __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
}

// Old: scalar, 256 threads.
template <typename T>
__global__ void Old(const T* __restrict__ x, const float* __restrict__ cs,
                    __nv_fp8_storage_t* __restrict__ out, float* __restrict__ rs, int64_t cols) {
  const int64_t row = blockIdx.x;
  const T* in = x + row * cols;
  auto* o = out + row * cols;
  float amax = 0;
  for (int64_t c = threadIdx.x; c < cols; c += 256)
    amax = fmaxf(amax, fabsf(Load(in[c]) * (cs ? cs[c] : 1.f)));
  amax = BlockReduce<256>(amax, MaxOp(), 0.f);
  const float inv = amax > 0 ? 448.f / amax : 1.f;
  if (threadIdx.x == 0) rs[row] = amax / 448.f;
  for (int64_t c = threadIdx.x; c < cols; c += 256)
    o[c] = ToF8(Load(in[c]) * (cs ? cs[c] : 1.f) * inv);
}

// New: packs, loop, 256 threads.
template <typename T, int kVec>
__global__ void Vec(const T* __restrict__ x, const float* __restrict__ cs,
                    __nv_fp8_storage_t* __restrict__ out, float* __restrict__ rs, int64_t cols) {
  const int64_t row = blockIdx.x, packs = cols / kVec;
  const auto* in = reinterpret_cast<const Pack<T, kVec>*>(x + row * cols);
  auto* o = reinterpret_cast<Pack<__nv_fp8_storage_t, kVec>*>(out + row * cols);
  float amax = 0;
  for (int64_t p = threadIdx.x; p < packs; p += 256) {
    const Pack<T, kVec> v = in[p];
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      amax = fmaxf(amax, fabsf(Load(v.v[k]) * (cs ? cs[p * kVec + k] : 1.f)));
  }
  amax = BlockReduce<256>(amax, MaxOp(), 0.f);
  const float inv = amax > 0 ? 448.f / amax : 1.f;
  if (threadIdx.x == 0) rs[row] = amax / 448.f;
  for (int64_t p = threadIdx.x; p < packs; p += 256) {
    const Pack<T, kVec> v = in[p];
    Pack<__nv_fp8_storage_t, kVec> q;
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      q.v[k] = ToF8(Load(v.v[k]) * (cs ? cs[p * kVec + k] : 1.f) * inv);
    o[p] = q;
  }
}

// Cached: every pack of the thread loaded first into registers; kThreads per row.
template <typename T, int kVec, int kThreads, int kCache>
__global__ void __launch_bounds__(kThreads)
    Cached(const T* __restrict__ x, const float* __restrict__ cs,
           __nv_fp8_storage_t* __restrict__ out, float* __restrict__ rs, int64_t cols) {
  const int64_t row = blockIdx.x, packs = cols / kVec;
  const auto* in = reinterpret_cast<const Pack<T, kVec>*>(x + row * cols);
  auto* o = reinterpret_cast<Pack<__nv_fp8_storage_t, kVec>*>(out + row * cols);
  float y[kCache][kVec];
  float amax = 0;
#pragma unroll
  for (int i = 0; i < kCache; ++i) {
    const int64_t p = threadIdx.x + i * kThreads;
    if (p < packs) {
      const Pack<T, kVec> v = in[p];
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        y[i][k] = Load(v.v[k]) * (cs ? cs[p * kVec + k] : 1.f);
        amax = fmaxf(amax, fabsf(y[i][k]));
      }
    }
  }
  amax = BlockReduce<kThreads>(amax, MaxOp(), 0.f);
  const float inv = amax > 0 ? 448.f / amax : 1.f;
  if (threadIdx.x == 0) rs[row] = amax / 448.f;
#pragma unroll
  for (int i = 0; i < kCache; ++i) {
    const int64_t p = threadIdx.x + i * kThreads;
    if (p < packs) {
      Pack<__nv_fp8_storage_t, kVec> q;
#pragma unroll
      for (int k = 0; k < kVec; ++k) q.v[k] = ToF8(y[i][k] * inv);
      o[p] = q;
    }
  }
}

template <typename F>
float Time(F f) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 5; ++i) f();
  cudaEventRecord(a);
  for (int i = 0; i < 50; ++i) f();
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms;
  cudaEventElapsedTime(&ms, a, b);
  return ms * 1000 / 50;
}

template <typename T>
void Run(const char* name, int64_t rows, int64_t cols, bool with_cs) {
  constexpr int kVec = 16 / sizeof(T);
  T* x;
  float* cs;
  __nv_fp8_storage_t* out;
  float* rs;
  cudaMalloc(&x, rows * cols * sizeof(T));
  cudaMemset(x, 0x3c, rows * cols * sizeof(T));
  cudaMalloc(&cs, cols * 4);
  cudaMemset(cs, 0, cols * 4);
  cudaMalloc(&out, rows * cols);
  cudaMalloc(&rs, rows * 4);
  float* c = with_cs ? cs : nullptr;
  const int64_t packs = cols / kVec;
  float t_old = Time([&] { Old<T><<<rows, 256>>>(x, c, out, rs, cols); });
  float t_vec = Time([&] { Vec<T, kVec><<<rows, 256>>>(x, c, out, rs, cols); });
  float t_c = -1;
  int th = 0;
  auto cached = [&](auto threads_tag) {
    constexpr int kT = decltype(threads_tag)::value;
    th = kT;
    t_c = Time([&] { Cached<T, kVec, kT, 8><<<rows, kT>>>(x, c, out, rs, cols); });
  };
  if (packs <= 128 * 8)
    cached(std::integral_constant<int, 128>());
  else if (packs <= 256 * 8)
    cached(std::integral_constant<int, 256>());
  else if (packs <= 512 * 8)
    cached(std::integral_constant<int, 512>());
  else
    cached(std::integral_constant<int, 1024>());
  const double mb = (rows * cols * (sizeof(T) + 1)) / 1e6;
  printf(
      "%-6s %5ld x %6ld: old %7.1f us  vec %7.1f us  cached(%d thr) %7.1f us   (%.0f MB: %.2f / "
      "%.2f / %.2f TB/s)\n",
      name, rows, cols, t_old, t_vec, th, t_c, mb, mb / t_old, mb / t_vec, mb / t_c);
  cudaFree(x);
  cudaFree(cs);
  cudaFree(out);
  cudaFree(rs);
}

int main() {
  for (int64_t rows : {3840, 1000}) {
    Run<__nv_bfloat16>("bf16", rows, 4096, false);
    Run<__nv_bfloat16>("bf16", rows, 14336, false);
    Run<float>("f32cs", rows, 4096, true);
    Run<float>("f32cs", rows, 6144, true);
    Run<float>("f32cs", rows, 28672, true);
  }
  printf("err %s\n", cudaGetErrorString(cudaGetLastError()));
}
