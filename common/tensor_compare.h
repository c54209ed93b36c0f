// Numerical comparison of tensors: the one definition of "relative error" that the
// bench's fast-path checks and the test suite's tolerances are stated in. Pure;
// thread-safe (reads its inputs, copies them to the CPU).
#pragma once

#include <ATen/ATen.h>

namespace llava {

// ||a - b|| / ||b|| in float64 over all elements, on CPU copies of a and b (any device,
// dtype or autograd state). When b is all zeros it is ||a - b||, so that two zero tensors
// compare as equal instead of as NaN.
double RelError(const at::Tensor& a, const at::Tensor& b);

}  // namespace llava
