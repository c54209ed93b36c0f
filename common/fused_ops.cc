#include "common/fused_ops.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include "common/log.h"

#ifdef LLAVA_HAVE_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/cuda/swiglu.h"
#endif

// at::mm(a, b, out_dtype): half inputs, float32 output, on CUDA (torch 2.9 on).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
#define LLAVA_HAVE_MM_OUT_DTYPE 1
#endif

namespace llava {
namespace {

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

// Saves gate and up (the matmul outputs autograd keeps anyway) and nothing else: the
// plain formula also keeps silu(gate).
class SwiGluFunction : public torch::autograd::Function<SwiGluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate,
                            const at::Tensor& up) {
    at::Tensor g = gate.contiguous(), u = up.contiguous();
    ctx->save_for_backward({g, u});
    const c10::cuda::CUDAGuard guard(g.device());
    at::Tensor out = at::empty_like(g);
    cuda::LaunchSwiGluForward(ElementTypeOf(g), g.data_ptr(), u.data_ptr(), out.data_ptr(),
                              g.numel(),
                              c10::cuda::getCurrentCUDAStream(g.device().index()).stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = saved[0];
    const at::Tensor& u = saved[1];
    at::Tensor go = grads[0].to(g.scalar_type()).contiguous();
    const c10::cuda::CUDAGuard guard(g.device());
    at::Tensor grad_gate = at::empty_like(g), grad_up = at::empty_like(u);
    cuda::LaunchSwiGluBackward(ElementTypeOf(g), go.data_ptr(), g.data_ptr(), u.data_ptr(),
                               grad_gate.data_ptr(), grad_up.data_ptr(), g.numel(),
                               c10::cuda::getCurrentCUDAStream(g.device().index()).stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {grad_gate, grad_up};
  }
};
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

at::Tensor LinearFloat32Out(const at::Tensor& x, const at::Tensor& weight) {
  return LinearFloat32OutFunction::apply(x, weight);
}

}  // namespace llava
