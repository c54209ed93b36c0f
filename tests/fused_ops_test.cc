// The fused SwiGLU against the plain formula silu(gate) * up in float64, forward and
// backward, for every dtype it takes, on shapes that do and do not allow its vectorized
// path (odd sizes, offset views). Where the fused kernel cannot run (a CPU build or
// device) SwiGlu must be the plain formula itself. LinearFloat32Out against float64
// products of the same half values, forward and backward.
#include "common/fused_ops.h"

#include <gtest/gtest.h>
#include <torch/version.h>

#include <cmath>
#include <utility>
#include <vector>

#include "common/llama_forward.h"
#include "common/llama_weights.h"
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

// SwiGlu of gate_up's two halves (one projection wrote both) computes what SwiGlu of the
// two tensors does, bit for bit, and its gradient is theirs side by side; at widths with
// and without the vectorized path.
TEST(FusedOpsTest, PackedSwiGluIsSwiGluOfItsHalves) {
  std::vector<at::Device> devices = {at::kCPU};
  if (at::hasCUDA()) devices.push_back(at::Device(at::kCUDA, 0));
  for (const at::Device& device : devices) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      for (int64_t f : {64, 37}) {
        SCOPED_TRACE(::testing::Message() << device << " " << dtype << " F " << f);
        at::manual_seed(f);
        at::Tensor g0 = (at::randn({2, 5, f}) * 4).to(device, dtype);
        at::Tensor u0 = at::randn({2, 5, f}).to(device, dtype);
        at::Tensor d = at::randn({2, 5, f}).to(device, dtype);
        at::Tensor gu = at::cat({g0, u0}, -1).requires_grad_(true);
        at::Tensor out = SwiGluPacked(gu);
        out.backward(d);
        const Result want = RunSwiGlu(g0, u0, d, true);
        const at::Tensor want_grad = at::cat({want.grad_gate, want.grad_up}, -1);
        if (device.is_cuda()) {
          // One kernel formula either way.
          EXPECT_TRUE(at::equal(out.detach(), want.out));
          EXPECT_TRUE(at::equal(gu.grad(), want_grad));
        } else {
          // ATen's formula on views: its vector and scalar loops may split the rows
          // differently (an ulp of float32).
          const double tol = dtype == at::kFloat ? 1e-6 : 1e-2;
          EXPECT_LE(testing::RelError(out.detach(), want.out), tol);
          EXPECT_LE(testing::RelError(gu.grad(), want_grad), tol);
        }
      }
    }
  }
}

// RoPE's tables as the model makes them: frequencies duplicated over both halves.
struct RopeTables {
  at::Tensor cos, sin_signed;  // [T, hd] float32
};
RopeTables MakeTables(int64_t t, int64_t hd, const at::Device& device) {
  at::Tensor inv = at::pow(10000.0, -at::arange(0, hd, 2, at::kDouble) / hd);
  at::Tensor freqs = at::outer(at::arange(3, 3 + t, at::kDouble), inv);  // positions 3..
  return {at::cat({freqs, freqs}, -1).cos().to(device, at::kFloat),
          at::cat({-freqs.sin(), freqs.sin()}, -1).to(device, at::kFloat)};
}

// The fused RoPE against the formula in float64, forward and backward, on a strided view
// (a head-split projection output) and in float32 and bfloat16; not fused off CUDA.
TEST(FusedOpsTest, RopeFusedIsTheRotationAndItsTranspose) {
  const RopeTables cpu_tables = MakeTables(5, 16, at::kCPU);
  EXPECT_FALSE(RopeIsFused(at::zeros({2, 3, 5, 16}), cpu_tables.cos));
  if (!at::hasCUDA()) GTEST_SKIP() << "the fused RoPE runs on CUDA only (checked: not used here)";
  const at::Device cuda(at::kCUDA, 0);
  const RopeTables tables = MakeTables(5, 16, cuda);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(::testing::Message() << dtype);
    at::manual_seed(3);
    // [B, T, N*hd] -> [B, N, T, hd]: the layout ProjectQkv hands RoPE.
    at::Tensor y = at::randn({2, 5, 3 * 16 + 8}, at::kDouble).to(cuda, dtype);
    at::Tensor x = y.narrow(-1, 0, 48).view({2, 5, 3, 16}).transpose(1, 2).requires_grad_(false);
    at::Tensor xg = x.detach().requires_grad_(true);
    ASSERT_TRUE(RopeIsFused(xg, tables.cos));
    at::Tensor out = RopeFused(xg, tables.cos, tables.sin_signed);
    at::Tensor g = at::randn({2, 3, 5, 16}, at::kDouble).to(cuda, dtype);
    out.backward(g);
    // Truth in float64 on the same values.
    at::Tensor x64 = x.to(at::kCPU, at::kDouble).requires_grad_(true);
    at::Tensor want = x64 * tables.cos.cpu().to(at::kDouble) +
                      x64.roll(8, -1) * tables.sin_signed.cpu().to(at::kDouble);
    want.backward(g.to(at::kCPU, at::kDouble));
    EXPECT_EQ(out.scalar_type(), dtype);
    EXPECT_TRUE(out.is_contiguous());
    const double tol = dtype == at::kFloat ? 1e-6 : 8e-3;
    EXPECT_LE(testing::RelError(out.detach(), want.detach()), tol);
    EXPECT_LE(testing::RelError(xg.grad(), x64.grad()), tol);
  }
}

// The decode attention kernel against softmax(q k^T / sqrt(hd)) v in float64, reading a
// KV cache narrowed to the positions filled; not used where a gradient is asked or off
// CUDA.
TEST(FusedOpsTest, DecodeAttentionIsSoftmaxOverTheCache) {
  at::Tensor cpu_q = at::zeros({2, 3, 4, 64});
  at::Tensor cpu_cache = at::zeros({2, 3, 40, 64});
  EXPECT_FALSE(DecodeAttentionIsFused(cpu_q, cpu_cache, cpu_cache));
  if (!at::hasCUDA())
    GTEST_SKIP() << "the decode attention runs on CUDA only (checked: not used here)";
  const at::Device cuda(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    // Query heads per KV head: Llama 3.1 8B's 4, 70B's 8, and each of the kernel's
    // register sizes (up to 4, 8, 16).
    for (int64_t groups : {1, 4, 8, 16}) {
      for (int64_t hd : {64, 128, 256}) {
        for (int64_t keys : {1, 23, 40}) {
          SCOPED_TRACE(::testing::Message()
                       << dtype << " groups " << groups << " hd " << hd << " keys " << keys);
          at::manual_seed(hd + keys);
          at::Tensor q = at::randn({2, 3, groups, hd}, at::kDouble).to(cuda, dtype);
          at::Tensor kc = (at::randn({2, 3, 40, hd}, at::kDouble) * 2).to(cuda, dtype);
          at::Tensor vc = at::randn({2, 3, 40, hd}, at::kDouble).to(cuda, dtype);
          at::Tensor k = kc.narrow(2, 0, keys), v = vc.narrow(2, 0, keys);
          if (groups == 16 && hd == 256) {
            // Its queries and partial sums alone would fill the kernel's shared memory.
            EXPECT_FALSE(DecodeAttentionIsFused(q, k, v));
            continue;
          }
          ASSERT_TRUE(DecodeAttentionIsFused(q, k, v));
          at::Tensor got = DecodeAttentionFused(q, k, v, 1.0 / std::sqrt(static_cast<double>(hd)));
          at::Tensor q64 = q.to(at::kCPU, at::kDouble), k64 = k.to(at::kCPU, at::kDouble);
          at::Tensor p =
              at::softmax(at::matmul(q64, k64.transpose(-2, -1)) / std::sqrt(hd * 1.0), -1);
          at::Tensor want = at::matmul(p, v.to(at::kCPU, at::kDouble));
          EXPECT_EQ(got.scalar_type(), dtype);
          EXPECT_LE(testing::RelError(got, want), dtype == at::kFloat ? 1e-5 : 8e-3);
        }
      }
    }
  }
  at::Tensor q = at::randn({2, 3, 4, 64}).to(cuda).requires_grad_(true);
  at::Tensor kc = at::randn({2, 3, 40, 64}).to(cuda);
  EXPECT_FALSE(DecodeAttentionIsFused(q, kc, kc));  // a gradient asked: the ATen path
}

// The residual step and the RMSNorm in one kernel: without a gradient h becomes h + x
// exactly (one float32 add, in place), and the norm is the formula in float64 to within
// its rounding; nothing is added without x; not fused off CUDA.
TEST(FusedOpsTest, AddRmsNormIsTheStreamStepAndTheNorm) {
  EXPECT_FALSE(AddRmsNormIsFused(at::zeros({2, 64}), at::ones({64})));
  if (!at::hasCUDA())
    GTEST_SKIP() << "the fused residual norm runs on CUDA only (checked: not used here)";
  const at::Device cuda(at::kCUDA, 0);
  at::NoGradGuard no_grad;
  at::manual_seed(5);
  // 96 columns: packs of 4; 95: one element at a time.
  for (int64_t cols : {96, 95}) {
    const at::Tensor w = (at::rand({cols}) + 0.5).to(cuda);
    for (bool with_x : {true, false}) {
      for (at::ScalarType x_dtype : {at::kFloat, at::kBFloat16}) {
        SCOPED_TRACE(::testing::Message() << cols << " x " << with_x << " " << x_dtype);
        at::Tensor h = (at::randn({3, 5, cols}) * 3).to(cuda);
        const at::Tensor h_before = h;
        at::Tensor x = with_x ? at::randn({3, 5, cols}).to(cuda, x_dtype) : at::Tensor();
        const at::Tensor want_h = with_x ? h + x.to(at::kFloat) : h.clone();
        at::Tensor y = AddRmsNorm(h, x, w, 1e-5, at::kBFloat16);
        EXPECT_TRUE(h.is_same(h_before));
        EXPECT_TRUE(at::equal(h, want_h));
        at::Tensor h64 = want_h.to(at::kCPU, at::kDouble);
        at::Tensor want =
            h64 * at::rsqrt(h64.pow(2).mean(-1, true) + 1e-5) * w.to(at::kCPU, at::kDouble);
        EXPECT_EQ(y.scalar_type(), at::kBFloat16);
        EXPECT_LE(testing::RelError(y, want), 8e-3);
      }
    }
  }
}

// With a gradient recorded: h is replaced by the sum (the caller's tensor untouched), and
// the gradients at h and x of a loss reading both the sum and the norm are the float64
// formula's (autograd of the plain expression) to within float32 (a bf16 output: its
// rounding, and its incoming gradient's); the first norm of a stack (no x) likewise.
TEST(FusedOpsTest, AddRmsNormGradientIsTheFormulas) {
  if (!at::hasCUDA()) GTEST_SKIP() << "the fused residual norm runs on CUDA only";
  const at::Device cuda(at::kCUDA, 0);
  at::manual_seed(6);
  for (int64_t cols : {96, 95}) {
    const at::Tensor w = (at::rand({cols}) + 0.5).to(cuda);
    for (bool with_x : {true, false}) {
      for (at::ScalarType y_dtype : {at::kFloat, at::kBFloat16}) {
        SCOPED_TRACE(::testing::Message() << cols << " x " << with_x << " y " << y_dtype);
        const at::Tensor h0 = (at::randn({2, 7, cols}) * 3).to(cuda);
        const at::Tensor x0 = at::randn({2, 7, cols}).to(cuda);
        const at::Tensor gy = at::randn({2, 7, cols}).to(cuda);
        const at::Tensor gs = at::randn({2, 7, cols}).to(cuda);
        // Fused.
        at::Tensor h_leaf = h0.clone().requires_grad_(true);
        at::Tensor x_leaf = x0.clone().requires_grad_(true);
        at::Tensor h = h_leaf;
        at::Tensor y = AddRmsNorm(h, with_x ? x_leaf : at::Tensor(), w, 1e-5, y_dtype);
        EXPECT_EQ(y.scalar_type(), y_dtype);
        EXPECT_TRUE(at::equal(h_leaf.detach(), h0));  // not written in place
        at::Tensor loss = (y.to(at::kFloat) * gy).sum();
        if (with_x) {
          EXPECT_FALSE(h.is_same(h_leaf));
          EXPECT_TRUE(at::equal(h.detach(), h0 + x0));
          loss = loss + (h * gs).sum();
        }
        loss.backward();
        // The formula in float64.
        at::Tensor h64 = h0.to(at::kCPU, at::kDouble).requires_grad_(true);
        at::Tensor x64 = x0.to(at::kCPU, at::kDouble).requires_grad_(true);
        at::Tensor s64 = with_x ? h64 + x64 : h64;
        at::Tensor y64 =
            s64 * at::rsqrt(s64.pow(2).mean(-1, true) + 1e-5) * w.to(at::kCPU, at::kDouble);
        at::Tensor loss64 = (y64 * gy.to(at::kCPU, at::kDouble)).sum();
        if (with_x) loss64 = loss64 + (s64 * gs.to(at::kCPU, at::kDouble)).sum();
        loss64.backward();
        const double tol = y_dtype == at::kFloat ? 1e-5 : 8e-3;
        EXPECT_LE(testing::RelError(y, y64.detach()), tol);
        ASSERT_TRUE(h_leaf.grad().defined());
        // The incoming gradient of a bf16 output is rounded to bf16.
        EXPECT_LE(testing::RelError(h_leaf.grad(), h64.grad()), tol);
        if (with_x) {
          ASSERT_TRUE(x_leaf.grad().defined());
          EXPECT_LE(testing::RelError(x_leaf.grad(), x64.grad()), tol);
        }
      }
    }
  }
}

// The model with every fused kernel against the same model without them: on a prompt
// and three decode steps through a KV cache (the eval path), the same hidden states but
// for float rounding; on training's pass (the residual norm's gradient kernel among
// them), the same hidden states and input gradient but for float rounding.
TEST(FusedOpsTest, FusedKernelsKeepTheDecoder) {
  if (!at::hasCUDA()) GTEST_SKIP() << "the fused kernels run on CUDA only";
  ModelOptions mo;
  mo.device = at::Device(at::kCUDA, 0);
  mo.dtype = at::kBFloat16;
  auto model = LoadLlama("synthetic:tiny", mo);
  ASSERT_TRUE(model.ok()) << model.status();
  const LlamaModel& m = **model;
  const int64_t d = m.config.hidden_size;
  at::manual_seed(9);
  const at::Tensor prompt = (at::randn({4, 7, d}) * 0.5).to(mo.device, mo.dtype);
  {
    SCOPED_TRACE("eval");
    ForwardOptions fused, plain;
    plain.fused_rope = plain.fused_decode_attention = plain.fused_residual_norm = false;
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> steps;
    for (int i = 0; i < 3; ++i) {
      steps.push_back((at::randn({4, 1, d}) * 0.5).to(mo.device, mo.dtype));
    }
    auto run = [&](const ForwardOptions& o) {
      KvCache cache = MakeKvCache(m, o, 4, 10);
      std::vector<at::Tensor> out = {DecoderForward(m, o, prompt, &cache)};
      for (const at::Tensor& s : steps) out.push_back(DecoderForward(m, o, s, &cache));
      return out;
    };
    const std::vector<at::Tensor> a = run(fused), b = run(plain);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_LE(testing::RelError(a[i], b[i]), 2e-2) << "pass " << i;
    }
  }
  {
    SCOPED_TRACE("training");
    ForwardOptions fused, plain;
    plain.fused_rope = plain.fused_residual_norm = plain.fused_swiglu = false;
    const at::Tensor grad = at::randn({4, 7, d}).to(mo.device);
    auto run = [&](const ForwardOptions& o) {
      at::Tensor in = prompt.clone().requires_grad_(true);
      at::Tensor out = DecoderForward(m, o, in, nullptr);
      (out.to(at::kFloat) * grad).sum().backward();
      return std::make_pair(out.detach(), in.grad());
    };
    const auto a = run(fused), b = run(plain);
    EXPECT_LE(testing::RelError(a.first, b.first), 2e-2);
    ASSERT_TRUE(a.second.defined() && b.second.defined());
    EXPECT_LE(testing::RelError(a.second, b.second), 2e-2);
  }
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
