// The fused SwiGLU against the plain formula silu(gate) * up in float64, forward and
// backward, for every dtype it takes, on shapes that do and do not allow its vectorized
// path (odd sizes, offset views). Where the fused kernel cannot run (a CPU build or
// device) SwiGlu must be the plain formula itself. LinearFloat32Out against float64
// products of the same half values, forward and backward.
#include "common/fused_ops.h"

#include <gtest/gtest.h>
#include <torch/version.h>

#include <vector>

#include "tests/test_util.h"

namespace llava {
namespace {

struct Result {
  at::Tensor out, grad_gate, grad_up;
};

Result RunSwiGlu(const at::Tensor& gate0, const at::Tensor& up0, const at::Tensor& grad_out,
                 bool fused) {
  at::Tensor gate = gate0.detach().requires_grad_(true);
  at::Tensor up = up0.detach().requires_grad_(true);
  at::Tensor out = SwiGlu(gate, up, fused);
  out.backward(grad_out);
  return {out.detach(), gate.grad(), up.grad()};
}

TEST(FusedOpsTest, SwiGluMatchesThePlainFormula) {
  std::vector<at::Device> devices = {at::kCPU};
  if (at::hasCUDA()) devices.push_back(at::Device(at::kCUDA, 0));
  int fused_runs = 0;
  for (const at::Device& device : devices) {
    for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      if (device.is_cpu() && dtype == at::kHalf) continue;  // no CPU half ops in libtorch 1.x
      // [2, 3, 64]: the vectorized path; [5, 37]: odd; a view starting 1 element in:
      // not 16-byte aligned.
      for (int shape = 0; shape < 3; ++shape) {
        at::manual_seed(shape);
        const auto opts = at::TensorOptions().dtype(at::kDouble);
        at::Tensor g64 =
            shape == 1 ? at::randn({5, 37}, opts) * 4 : at::randn({2, 3, 64}, opts) * 4;
        at::Tensor u64 = at::randn(g64.sizes(), opts);
        at::Tensor d64 = at::randn(g64.sizes(), opts);
        at::Tensor g = g64.to(device, dtype), u = u64.to(device, dtype), d = d64.to(device, dtype);
        if (shape == 2) {
          g = at::cat({g.view({-1}).narrow(0, 0, 1), g.view({-1})})
                  .narrow(0, 1, g.numel())
                  .view(g64.sizes());
          u = at::cat({u.view({-1}).narrow(0, 0, 1), u.view({-1})})
                  .narrow(0, 1, u.numel())
                  .view(g64.sizes());
        }
        // Truth: the plain formula in float64 on the rounded inputs.
        const Result want = RunSwiGlu(g.to(at::kCPU, at::kDouble), u.to(at::kCPU, at::kDouble),
                                      d.to(at::kCPU, at::kDouble), false);
        const Result got = RunSwiGlu(g, u, d, true);
        const Result plain = RunSwiGlu(g, u, d, false);
        const bool fused = SwiGluIsFused(g, u);
        fused_runs += fused;
        EXPECT_EQ(fused, device.is_cuda());
        EXPECT_EQ(got.out.scalar_type(), dtype);
        EXPECT_EQ(got.grad_gate.scalar_type(), dtype);
        const std::vector<std::pair<const char*, at::Tensor Result::*>> fields = {
            {"out", &Result::out},
            {"grad_gate", &Result::grad_gate},
            {"grad_up", &Result::grad_up}};
        for (const auto& [name, f] : fields) {
          const double e_fused = testing::RelError(got.*f, want.*f);
          const double e_plain = testing::RelError(plain.*f, want.*f);
          SCOPED_TRACE(::testing::Message()
                       << device << " " << dtype << " shape " << shape << " " << name);
          if (!fused) {
            EXPECT_TRUE(at::equal(got.*f, plain.*f));  // the fallback is the formula itself
          } else if (dtype == at::kFloat) {
            EXPECT_LE(e_fused, 1e-6);
          } else {
            // One rounding at the end instead of one per op: no worse than the plain ops.
            EXPECT_LE(e_fused, std::max(1.01 * e_plain, dtype == at::kHalf ? 1e-3 : 8e-3));
          }
        }
      }
    }
  }
  EXPECT_EQ(fused_runs, at::hasCUDA() ? 9 : 0);
}

// The sums of exact products of half values: float32 output within float32's rounding of
// them (a half output would be ~1e-3 off), for [B, T, K] inputs; x's gradient is a half
// matmul of the incoming gradient rounded to x's dtype.
TEST(FusedOpsTest, LinearFloat32OutKeepsTheSumsUnrounded) {
  std::vector<at::Device> devices = {at::kCPU};
  if (at::hasCUDA()) devices.push_back(at::Device(at::kCUDA, 0));
  for (const at::Device& device : devices) {
    for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
      if (device.is_cpu() && dtype == at::kHalf) continue;  // no CPU half ops in libtorch 1.x
      SCOPED_TRACE(::testing::Message() << device << " " << dtype);
      at::manual_seed(1);
      const auto opts = at::TensorOptions().dtype(at::kDouble);
      at::Tensor x = at::randn({2, 3, 96}, opts).to(device, dtype).requires_grad_(true);
      at::Tensor w = at::randn({40, 96}, opts).to(device, dtype);
      at::Tensor g = at::randn({2, 3, 40}, opts).to(device, at::kFloat);
      at::Tensor out = LinearFloat32Out(x, w);  // [2, 3, 40]
      ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 3, 40}));
      EXPECT_EQ(out.scalar_type(), at::kFloat);
      out.backward(g);
      const at::Tensor x64 = x.detach().to(at::kCPU, at::kDouble);
      const at::Tensor w64 = w.to(at::kCPU, at::kDouble);
      // Before torch 2.9 CUDA has no float32-output half matmul: the sums are rounded.
      const bool exact = device.is_cpu() || TORCH_VERSION_MAJOR > 2 ||
                         (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9);
      EXPECT_LE(testing::RelError(out.detach(), at::matmul(x64, w64.t())),
                exact ? 1e-6 : (dtype == at::kHalf ? 1e-3 : 8e-3));
      const at::Tensor gx = at::matmul(g.to(dtype).to(at::kCPU, at::kDouble), w64);
      ASSERT_TRUE(x.grad().defined());
      EXPECT_EQ(x.grad().scalar_type(), dtype);
      EXPECT_LE(testing::RelError(x.grad(), gx), dtype == at::kHalf ? 2e-3 : 8e-3);
    }
  }
}

}  // namespace
}  // namespace llava
