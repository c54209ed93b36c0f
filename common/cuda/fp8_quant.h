// Launcher of the row-wise float8 quantization kernel (common/cuda/fp8_quant.cu): plain
// C++ declarations, so that callers need neither CUDA headers nor nvcc. The launch is
// queued on `stream` (a cudaStream_t) and returns at once; pointers are device memory.
#pragma once

#include <cstdint>

#include "common/cuda/swiglu.h"  // ElementType

namespace llava::cuda {

enum class Float8Type { kE4m3, kE5m2 };

// For each row r of x [rows, cols] (row-major, `type`), with y = x * col_scale (col_scale
// [cols] float32, or null for ones): row_scale[r] = max|y[r, :]| / max(float8) (1 for an
// all-zero row) and out[r, c] = y[r, c] / row_scale[r] rounded to nearest even in
// `out_type`, saturated at its largest finite value. One pass to find the row's largest
// magnitude and one to write it, both from the same block: the row is read twice, from
// L2 the second time for rows of Llama's widths.
void LaunchQuantizeRowsFloat8(ElementType type, Float8Type out_type, const void* x,
                              const float* col_scale, void* out, float* row_scale, int64_t rows,
                              int64_t cols, void* stream);

}  // namespace llava::cuda
