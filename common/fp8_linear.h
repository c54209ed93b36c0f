// The frozen model's linear layers in FP8 (--weights fp8): each [N, K] weight quantized
// once, at load, to float8 e4m3 with one float32 scale per output row; each input scaled
// per row at run time and the product computed by a row-wise scaled FP8 GEMM
// (at::_scaled_mm); the backward to the input as ForwardOptions::fp8_backward says.
// Owns the quantization rules (scales, e4m3 rounding: plain ATen, any libtorch and
// device, so that they are tested everywhere) and the CUDA paths (a CUDA libtorch >= 2.5
// on a GPU of compute capability 8.9 or later; Fp8Supported says why not elsewhere).
// Stateless; an Fp8Matrix is immutable once made and may be read from any thread.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/forward_options.h"

namespace llava {

// The largest finite float8 e4m3 (fn: no infinities) value.
inline constexpr double kE4m3Max = 448.0;

// A frozen [N, K] matrix W ~= data * scale^T (scale per row of W).
struct Fp8Matrix {
  at::Tensor data;    // [N, K] float8_e4m3fn, row-major
  at::Tensor scale;   // [1, N] float32: the layout the GEMM reads its scales in
  at::Tensor data_t;  // [K, N] float8_e4m3fn row-major, data transposed, for the backward
                      // GEMM (which reads its second operand column-major); undefined when
                      // not kept (then transposed at each backward call)

  bool defined() const { return data.defined(); }
  int64_t bytes() const;
};

// Whether an [N, K] matrix can run as FP8: the GEMM wants both a multiple of 16. Others
// stay in the model dtype (the tied tiny fixture's MLP, say).
bool Fp8Shape(int64_t n, int64_t k);

// Per row of w [N, K]: max |w[n, :]| / 448 as float32 [N]; 1 for an all-zero row.
at::Tensor Fp8RowScales(const at::Tensor& w);

// x rounded to the nearest float8 e4m3 value (ties to even), saturated at +-448, as
// float32 of x's shape: what a cast to float8_e4m3fn keeps of a value in range.
at::Tensor RoundToE4m3(const at::Tensor& x);

// w [N, K] scaled per row and rounded: values (float32 on the e4m3 grid, |v| <= 448) and
// scale [N], w ~= values * scale[:, None].
struct E4m3Rows {
  at::Tensor values;
  at::Tensor scale;
};
E4m3Rows QuantizeRowsE4m3(const at::Tensor& w);

// OK where FP8 linear layers run on `device`; else why not (this libtorch, a CPU device,
// a GPU before sm_89), as FailedPrecondition.
absl::Status Fp8Supported(const at::Device& device);

// Whether transposed copies of `bytes` in all fit `device` by the default rule: at most
// half of its memory (false off CUDA).
bool Fp8TransposedCopyFits(const at::Device& device, int64_t bytes);

// w [N, K] (finite, any float dtype, on its device) as an Fp8Matrix on that device, with
// the transposed copy when `keep_transposed`. Errors: not finite (InvalidArgument), FP8
// not in this libtorch (FailedPrecondition).
absl::StatusOr<Fp8Matrix> QuantizeFp8(const at::Tensor& w, bool keep_transposed);

// The rows of `parts` (matrices of one K, all with or all without transposed copies) as
// one matrix: exact, each row keeps its own scale. For projections that read one input
// (q/k/v, gate/up): one GEMM instead of several, forward and backward.
Fp8Matrix ConcatFp8Rows(const std::vector<const Fp8Matrix*>& parts);

// data * scale^T in `dtype`: the weights an FP8 model computes with, as a dense matrix.
at::Tensor DequantizeFp8(const Fp8Matrix& m, at::ScalarType dtype);

// The input x [..., K] of one or more FP8 linear layers, quantized once per row.
struct Fp8Input {
  at::Tensor x;      // as given: the gradient flows to it
  at::Tensor data;   // [M, K] float8_e4m3fn
  at::Tensor scale;  // [M, 1] float32
};
Fp8Input QuantizeFp8Input(const at::Tensor& x);

// x W^T -> [..., N] in `out_dtype` (bfloat16, or float32 on sm_90 and later: elsewhere
// computed in bfloat16 and converted), differentiable in x as `options` say.
at::Tensor Fp8Linear(const Fp8Input& in, const Fp8Matrix& w, at::ScalarType out_dtype,
                     const ForwardOptions& options);

}  // namespace llava
