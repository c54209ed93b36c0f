#include "common/fused_ops.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include "common/log.h"

#ifdef LLAVA_HAVE_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/cuda/attention.h"
#include "common/cuda/norm.h"
#include "common/cuda/swiglu.h"
#endif

// at::mm(a, b, out_dtype): half inputs, float32 output, on CUDA (torch 2.9 on).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
#define LLAVA_HAVE_MM_OUT_DTYPE 1
#endif

namespace llava {
namespace {

// The element types the CUDA kernels take.
bool IsKernelFloat(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

// a [M, K] times b [K, N] in a's half dtype -> [M, N] float32.
at::Tensor MmFloat32Out(const at::Tensor& a, const at::Tensor& b) {
  if (a.is_cuda()) {
#ifdef LLAVA_HAVE_MM_OUT_DTYPE
    return at::mm(a, b, at::kFloat);
#else
    // No half matmul with a float32 output before torch 2.9: the sums are rounded to
    // the half dtype first (as transformers computes), rather than a matmul of float32
    // copies that would run without tensor cores.
    static const bool warned = [] {
      LM_LOG(WARNING) << "torch " << TORCH_VERSION << " has no float32-output half matmul "
                      << "(torch >= 2.9): bf16 q/k/v and block outputs are rounded to bf16, "
                      << "about as far from float32 as transformers' bf16";
      return true;
    }();
    (void)warned;
    return at::mm(a, b).to(at::kFloat);
#endif
  }
  // Each product of two half values is exact in float32, so this differs from the
  // cuBLAS call only in the order of the float32 sums.
  return at::mm(a.to(at::kFloat), b.to(at::kFloat));
}

class LinearFloat32OutFunction : public torch::autograd::Function<LinearFloat32OutFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight) {
    ctx->save_for_backward({weight});
    const int64_t k = x.size(-1);
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = weight.size(0);
    return MmFloat32Out(x.reshape({-1, k}), weight.t()).view(shape);  // [..., N]
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor weight = ctx->get_saved_variables()[0];
    const at::Tensor& g = grads[0];  // [..., N] float32
    std::vector<int64_t> shape = g.sizes().vec();
    shape.back() = weight.size(1);
    // The incoming gradient is rounded to the half dtype, as it would be had the
    // forward written half: the matmul's operands are half either way.
    at::Tensor gx = at::mm(g.reshape({-1, g.size(-1)}).to(weight.scalar_type()), weight);
    return {gx.view(shape), at::Tensor()};
  }
};

#ifdef LLAVA_HAVE_CUDA

void* ByteOffset(void* p, int64_t elements, const at::Tensor& of) {
  return static_cast<char*>(p) + elements * static_cast<int64_t>(of.element_size());
}

cudaStream_t StreamOf(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

// out [rows, cols] = silu(gate) * up for gate/up laid out in `buf` as `shape` says.
at::Tensor SwiGluForwardKernel(const at::Tensor& buf, const void* gate, const void* up,
                               const cuda::SwiGluShape& shape, std::vector<int64_t> out_sizes) {
  const c10::cuda::CUDAGuard guard(buf.device());
  at::Tensor out = at::empty(out_sizes, buf.options());
  cuda::LaunchSwiGluForward(ElementTypeOf(buf), gate, up, out.data_ptr(), shape, StreamOf(buf));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// The gradients of SwiGluForwardKernel's gate and up, written where grad_gate and grad_up
// point (rows ld_grad apart).
void SwiGluBackwardKernel(const at::Tensor& grad_out, const at::Tensor& buf, const void* gate,
                          const void* up, const cuda::SwiGluShape& shape, void* grad_gate,
                          void* grad_up, int64_t ld_grad) {
  const c10::cuda::CUDAGuard guard(buf.device());
  at::Tensor go = grad_out.to(buf.scalar_type()).contiguous();
  cuda::LaunchSwiGluBackward(ElementTypeOf(buf), go.data_ptr(), gate, up, grad_gate, grad_up, shape,
                             ld_grad, StreamOf(buf));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Saves gate and up (the matmul outputs autograd keeps anyway) and nothing else: the
// plain formula also keeps silu(gate).
class SwiGluFunction : public torch::autograd::Function<SwiGluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate,
                            const at::Tensor& up) {
    at::Tensor g = gate.contiguous(), u = up.contiguous();
    ctx->save_for_backward({g, u});
    return SwiGluForwardKernel(g, g.data_ptr(), u.data_ptr(), Flat(g), g.sizes().vec());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = saved[0];
    const at::Tensor& u = saved[1];
    at::Tensor grad_gate = at::empty_like(g), grad_up = at::empty_like(u);
    SwiGluBackwardKernel(grads[0], g, g.data_ptr(), u.data_ptr(), Flat(g), grad_gate.data_ptr(),
                         grad_up.data_ptr(), g.numel());
    return {grad_gate, grad_up};
  }

 private:
  static cuda::SwiGluShape Flat(const at::Tensor& t) { return {1, t.numel(), t.numel()}; }
};

// gate_up [..., 2F] holds gate and up side by side (one matmul wrote both); its gradient
// is written the same way, so that it feeds that matmul's backward without a copy.
class SwiGluPackedFunction : public torch::autograd::Function<SwiGluPackedFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate_up) {
    at::Tensor gu = gate_up.contiguous();
    ctx->save_for_backward({gu});
    std::vector<int64_t> sizes = gu.sizes().vec();
    sizes.back() /= 2;
    const cuda::SwiGluShape shape = Halves(gu);
    return SwiGluForwardKernel(gu, gu.data_ptr(), ByteOffset(gu.data_ptr(), shape.cols, gu), shape,
                               std::move(sizes));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor gu = ctx->get_saved_variables()[0];
    const cuda::SwiGluShape shape = Halves(gu);
    at::Tensor grad = at::empty_like(gu);
    SwiGluBackwardKernel(grads[0], gu, gu.data_ptr(), ByteOffset(gu.data_ptr(), shape.cols, gu),
                         shape, grad.data_ptr(), ByteOffset(grad.data_ptr(), shape.cols, grad),
                         shape.ld);
    return {grad};
  }

 private:
  static cuda::SwiGluShape Halves(const at::Tensor& gu) {
    const int64_t ld = gu.size(-1);
    return {gu.numel() / ld, ld / 2, ld};
  }
};

cuda::RopeShape RopeShapeOf(const at::Tensor& x) {
  cuda::RopeShape sh;
  sh.b = x.size(0);
  sh.n = x.size(1);
  sh.t = x.size(2);
  sh.hd = x.size(3);
  sh.stride_b = x.stride(0);
  sh.stride_n = x.stride(1);
  sh.stride_t = x.stride(2);
  return sh;
}

// x rotated by the tables (sign -1: by their transpose), as [B, N, T, hd] contiguous.
at::Tensor RopeKernel(const at::Tensor& x0, const at::Tensor& cos, const at::Tensor& sin_signed,
                      float sign) {
  const at::Tensor x = x0.stride(3) == 1 ? x0 : x0.contiguous();
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  cuda::LaunchRope(ElementTypeOf(x), ElementTypeOf(out), x.data_ptr(), RopeShapeOf(x),
                   cos.data_ptr<float>(), sin_signed.data_ptr<float>(), sign, out.data_ptr(),
                   StreamOf(x));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// Saves the tables only: the backward is the transposed rotation of the gradient.
class RopeFunction : public torch::autograd::Function<RopeFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin_signed) {
    ctx->save_for_backward({cos, sin_signed});
    return RopeKernel(x, cos, sin_signed, 1.0f);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    // rotate_half's transpose is rotate_half negated: the same rotation by -sin, given
    // tables whose two halves are equal.
    return {RopeKernel(grads[0], saved[0], saved[1], -1.0f), at::Tensor(), at::Tensor()};
  }
};

// rsqrt(mean(s^2) + eps) per row of s = h + x, and y = s * that * weight in y's dtype,
// with s written to h_out (h itself: in place; undefined: x is undefined too and s is h).
// Returns the per-row factor when `keep_rstd`.
at::Tensor AddRmsNormKernel(const at::Tensor& h, const at::Tensor& x, const at::Tensor& h_out,
                            const at::Tensor& weight, double eps, at::Tensor& y, bool keep_rstd) {
  const c10::cuda::CUDAGuard guard(h.device());
  cuda::AddRmsNormArgs a;
  a.cols = h.size(-1);
  a.rows = h.numel() / a.cols;
  at::Tensor rstd = keep_rstd ? at::empty({a.rows}, h.options()) : at::Tensor();
  a.h = h.data_ptr<float>();
  if (x.defined()) {
    a.x = x.data_ptr();
    a.x_type = ElementTypeOf(x);
  }
  a.h_out = h_out.defined() ? h_out.data_ptr<float>() : nullptr;
  a.weight = weight.data_ptr<float>();
  a.y = y.data_ptr();
  a.y_type = ElementTypeOf(y);
  a.rstd = keep_rstd ? rstd.data_ptr<float>() : nullptr;
  a.eps = static_cast<float>(eps);
  cuda::LaunchAddRmsNorm(a, StreamOf(h));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return rstd;
}

// The gradient at the sum s of y (grad_y; undefined: none) plus grad_s (undefined: none),
// float32 of s's shape; undefined when neither is defined.
at::Tensor RmsNormBackwardKernel(const at::Tensor& grad_y, const at::Tensor& grad_s,
                                 const at::Tensor& s, const at::Tensor& weight,
                                 const at::Tensor& rstd) {
  if (!grad_y.defined()) return grad_s.defined() ? grad_s.to(at::kFloat) : at::Tensor();
  const c10::cuda::CUDAGuard guard(s.device());
  const at::Tensor gy = grad_y.contiguous();
  const at::Tensor gs = grad_s.defined() ? grad_s.to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor dh = at::empty_like(s);
  const int64_t cols = s.size(-1);
  cuda::LaunchRmsNormBackward(ElementTypeOf(gy), gy.data_ptr(),
                              gs.defined() ? gs.data_ptr<float>() : nullptr, s.data_ptr<float>(),
                              weight.data_ptr<float>(), rstd.data_ptr<float>(),
                              dh.data_ptr<float>(), s.numel() / cols, cols, StreamOf(s));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return dh;
}

// s = h + x and y = RMSNorm(s): returns {s, y}. Saves s and the per-row factor.
class AddRmsNormFunction : public torch::autograd::Function<AddRmsNormFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& h, const at::Tensor& x,
                                                const at::Tensor& weight, double eps,
                                                int64_t out_dtype) {
    at::Tensor s = at::empty_like(h);
    at::Tensor y = at::empty(h.sizes(), h.options().dtype(static_cast<at::ScalarType>(out_dtype)));
    at::Tensor rstd = AddRmsNormKernel(h, x, s, weight, eps, y, /*keep_rstd=*/true);
    ctx->save_for_backward({s, weight, rstd});
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    return {s, y};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor dh = RmsNormBackwardKernel(grads[1], grads[0], saved[0], saved[1], saved[2]);
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const at::Tensor none;
    return {dh, dh.defined() ? dh.to(x_dtype) : dh, none, none, none};
  }
};

// y = RMSNorm(h), h unchanged (the first norm of the stack, before anything is added).
class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h,
                            const at::Tensor& weight, double eps, int64_t out_dtype) {
    at::Tensor y = at::empty(h.sizes(), h.options().dtype(static_cast<at::ScalarType>(out_dtype)));
    at::Tensor rstd = AddRmsNormKernel(h, at::Tensor(), at::Tensor(), weight, eps, y, true);
    ctx->save_for_backward({h, weight, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor none;
    return {RmsNormBackwardKernel(grads[0], none, saved[0], saved[1], saved[2]), none, none, none};
  }
};

// A [B, Hkv, S, hd] key or value tensor as a cache holds it: rows of hd contiguous, and
// the batch and head dimensions one run of equal steps.
bool CacheLayout(const at::Tensor& t) {
  return t.dim() == 4 && t.stride(3) == 1 && t.stride(2) == t.size(3) &&
         t.stride(0) == t.size(1) * t.stride(1);
}
#endif

}  // namespace

#ifdef LLAVA_HAVE_CUDA
cuda::ElementType ElementTypeOf(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kHalf:
      return cuda::ElementType::kFloat16;
    case at::kBFloat16:
      return cuda::ElementType::kBFloat16;
    default:
      return cuda::ElementType::kFloat32;
  }
}
#endif

bool SwiGluIsFused(const at::Tensor& gate, const at::Tensor& up) {
#ifdef LLAVA_HAVE_CUDA
  const at::ScalarType t = gate.scalar_type();
  return gate.is_cuda() && up.device() == gate.device() && up.scalar_type() == t &&
         gate.sizes() == up.sizes() && (t == at::kFloat || t == at::kHalf || t == at::kBFloat16);
#else
  return false;
#endif
}

at::Tensor SwiGlu(const at::Tensor& gate, const at::Tensor& up, bool fused) {
#ifdef LLAVA_HAVE_CUDA
  if (fused && SwiGluIsFused(gate, up)) return SwiGluFunction::apply(gate, up);
#endif
  return at::silu(gate) * up;
}

at::Tensor SwiGluPacked(const at::Tensor& gate_up, bool fused) {
  LM_CHECK_EQ(gate_up.size(-1) % 2, 0) << "gate_up holds two halves";
  const int64_t f = gate_up.size(-1) / 2;
  at::Tensor gate = gate_up.narrow(-1, 0, f), up = gate_up.narrow(-1, f, f);
#ifdef LLAVA_HAVE_CUDA
  if (fused && SwiGluIsFused(gate, up)) return SwiGluPackedFunction::apply(gate_up);
#endif
  return at::silu(gate) * up;
}

bool RopeIsFused(const at::Tensor& x, const at::Tensor& cos) {
#ifdef LLAVA_HAVE_CUDA
  return x.is_cuda() && x.dim() == 4 && x.size(3) % 2 == 0 && x.size(3) <= 512 &&
         x.size(0) * x.size(1) * x.size(2) < (int64_t{1} << 32) && IsKernelFloat(x.scalar_type()) &&
         cos.device() == x.device() && cos.scalar_type() == at::kFloat && cos.is_contiguous() &&
         cos.dim() == 2 && cos.size(0) == x.size(2) && cos.size(1) == x.size(3);
#else
  (void)x;
  (void)cos;
  return false;
#endif
}

at::Tensor RopeFused(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin_signed) {
  LM_CHECK(RopeIsFused(x, cos) && sin_signed.sizes() == cos.sizes() && sin_signed.is_contiguous() &&
           sin_signed.scalar_type() == at::kFloat)
      << "RopeFused: x " << x.sizes() << " " << x.scalar_type() << ", tables " << cos.sizes();
#ifdef LLAVA_HAVE_CUDA
  return RopeFunction::apply(x, cos, sin_signed);
#else
  return {};
#endif
}

bool DecodeAttentionIsFused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#ifdef LLAVA_HAVE_CUDA
  if (!q.is_cuda() || q.dim() != 4 || !CacheLayout(k) || !CacheLayout(v)) return false;
  if (k.device() != q.device() || v.device() != q.device()) return false;
  const at::ScalarType t = q.scalar_type();
  if (!IsKernelFloat(t) || k.scalar_type() != t || v.scalar_type() != t) return false;
  if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) {
    return false;
  }
  const int64_t hd = q.size(3), groups = q.size(2), keys = k.size(2);
  auto aligned = [](const at::Tensor& t) {
    return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  };
  return k.size(3) == hd && v.sizes() == k.sizes() && q.size(0) == k.size(0) &&
         q.size(1) == k.size(1) && keys > 0 && keys <= cuda::DecodeAttentionMaxKeys(groups, hd) &&
         k.stride(1) == v.stride(1) && aligned(k) && aligned(v);
#else
  (void)q;
  (void)k;
  (void)v;
  return false;
#endif
}

at::Tensor DecodeAttentionFused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                double scale) {
  LM_CHECK(DecodeAttentionIsFused(q, k, v))
      << "DecodeAttentionFused: q " << q.sizes() << ", k " << k.sizes() << " " << k.strides();
#ifdef LLAVA_HAVE_CUDA
  const at::Tensor qc = q.contiguous();
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty(qc.sizes(), qc.options());
  cuda::LaunchDecodeAttention(ElementTypeOf(qc), qc.data_ptr(), k.data_ptr(), v.data_ptr(),
                              q.size(0) * q.size(1), q.size(2), k.size(2), q.size(3), k.stride(1),
                              static_cast<float>(scale), out.data_ptr(), StreamOf(qc));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
#else
  (void)scale;
  return {};
#endif
}

bool AddRmsNormIsFused(const at::Tensor& h, const at::Tensor& weight) {
#ifdef LLAVA_HAVE_CUDA
  return h.is_cuda() && h.scalar_type() == at::kFloat && h.is_contiguous() && h.dim() >= 1 &&
         weight.device() == h.device() && weight.scalar_type() == at::kFloat &&
         weight.is_contiguous() && weight.dim() == 1 && weight.size(0) == h.size(-1);
#else
  (void)h;
  (void)weight;
  return false;
#endif
}

at::Tensor AddRmsNorm(at::Tensor& h, const at::Tensor& x, const at::Tensor& weight, double eps,
                      at::ScalarType out_dtype) {
  LM_CHECK(AddRmsNormIsFused(h, weight) && IsKernelFloat(out_dtype) &&
           (!x.defined() || (x.sizes() == h.sizes() && x.is_contiguous() &&
                             x.device() == h.device() && IsKernelFloat(x.scalar_type()))))
      << "AddRmsNorm: h " << h.sizes() << " " << h.scalar_type() << ", weight " << weight.sizes();
#ifdef LLAVA_HAVE_CUDA
  const bool grad =
      at::GradMode::is_enabled() && (h.requires_grad() || (x.defined() && x.requires_grad()));
  const auto dtype = static_cast<int64_t>(out_dtype);
  if (grad && x.defined()) {
    torch::autograd::variable_list out = AddRmsNormFunction::apply(h, x, weight, eps, dtype);
    h = out[0];
    return out[1];
  }
  if (grad) return RmsNormFunction::apply(h, weight, eps, dtype);
  at::Tensor y = at::empty(h.sizes(), h.options().dtype(out_dtype));
  AddRmsNormKernel(h, x, x.defined() ? h : at::Tensor(), weight, eps, y, /*keep_rstd=*/false);
  return y;
#else
  (void)eps;
  return {};
#endif
}

at::Tensor LinearFloat32Out(const at::Tensor& x, const at::Tensor& weight) {
  return LinearFloat32OutFunction::apply(x, weight);
}

}  // namespace llava
