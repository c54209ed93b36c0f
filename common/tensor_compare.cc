#include "common/tensor_compare.h"

namespace llava {

double RelError(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.detach().to(at::kCPU, at::kDouble);
  const at::Tensor y = b.detach().to(at::kCPU, at::kDouble);
  const double denom = y.norm().item<double>();
  const double num = (x - y).norm().item<double>();
  return denom == 0.0 ? num : num / denom;
}

}  // namespace llava
