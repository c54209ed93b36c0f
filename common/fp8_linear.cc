#include "common/fp8_linear.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include "absl/strings/str_cat.h"
#include "common/log.h"

// The float8 dtypes exist from torch 2.1 on; the row-wise scaled GEMM from 2.5.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define LLAVA_HAVE_FLOAT8_DTYPE 1
#endif
#if defined(LLAVA_HAVE_CUDA) && defined(LLAVA_HAVE_FLOAT8_DTYPE) && \
    (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 5)
#define LLAVA_HAVE_FP8 1
#endif

#ifdef LLAVA_HAVE_FP8
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/cuda/fp8_quant.h"
#include "common/fused_ops.h"
#endif

namespace llava {

#ifdef LLAVA_HAVE_FP8
namespace {

// The properties of a CUDA device ("cuda" without an index: the current one), cached by
// ATen after the first call.
const cudaDeviceProp& DeviceProps(const at::Device& device) {
  return *at::cuda::getDeviceProperties(device.has_index() ? device.index()
                                                           : c10::cuda::current_device());
}

}  // namespace
#endif

int64_t Fp8Matrix::bytes() const {
  int64_t n = 0;
  for (const at::Tensor* t : {&data, &scale, &data_t}) {
    if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
  }
  return n;
}

bool Fp8Shape(int64_t n, int64_t k) { return n > 0 && k > 0 && n % 16 == 0 && k % 16 == 0; }

at::Tensor Fp8RowScales(const at::Tensor& w) {
  at::Tensor amax = w.abs().amax(1).to(at::kFloat);
  return at::where(amax > 0, amax / kE4m3Max, at::ones_like(amax));
}

at::Tensor RoundToE4m3(const at::Tensor& x) {
  at::Tensor a = x.to(at::kFloat).abs().clamp_max(kE4m3Max).contiguous();
  // e4m3 keeps 3 significand bits: a value in [2^e, 2^(e+1)) is a multiple of 2^(e-3).
  // e is read from the float32 exponent field (exact, where log2 is not), and is at least
  // -6: below 2^-6 the subnormals share the quantum 2^-9.
  constexpr int64_t kOne = int64_t{1} << 23;  // 1 in the float32 exponent field
  at::Tensor field = at::div(a.view(at::kInt), kOne, "floor").clamp_min(127 - 6);
  at::Tensor quantum = ((field - 3) * kOne).to(at::kInt).contiguous().view(at::kFloat);
  // Dividing and multiplying by a power of two is exact; round() breaks ties to even.
  at::Tensor r = at::round(a / quantum) * quantum;
  return at::where(x < 0, -r, r);
}

E4m3Rows QuantizeRowsE4m3(const at::Tensor& w) {
  LM_CHECK_EQ(w.dim(), 2);
  E4m3Rows out;
  out.scale = Fp8RowScales(w);
  out.values = RoundToE4m3(w.to(at::kFloat) / out.scale.unsqueeze(1));
  return out;
}

absl::Status Fp8Supported(const at::Device& device) {
#ifndef LLAVA_HAVE_FP8
  (void)device;
  return absl::FailedPreconditionError(absl::StrCat(
      "--weights fp8 needs a CUDA build against libtorch >= 2.5 (row-wise scaled "
      "FP8 matmuls); this one is libtorch ",
      TORCH_VERSION,
#ifdef LLAVA_HAVE_CUDA
      " with CUDA"
#else
      " without CUDA"
#endif
      ));
#else
  if (!device.is_cuda()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--weights fp8 runs on CUDA GPUs of compute capability 8.9 or later "
                     "(Ada, Hopper, Blackwell), not on device ",
                     device.str()));
  }
  const cudaDeviceProp& p = DeviceProps(device);
  if (p.major * 10 + p.minor < 89) {
    return absl::FailedPreconditionError(
        absl::StrCat("--weights fp8 needs a GPU of compute capability 8.9 or later; ", device.str(),
                     " (", p.name, ") is ", p.major, ".", p.minor, ": use --weights dense"));
  }
  return absl::OkStatus();
#endif
}

bool Fp8TransposedCopyFits(const at::Device& device, int64_t bytes) {
#ifdef LLAVA_HAVE_FP8
  if (!device.is_cuda()) return false;
  return bytes <= static_cast<int64_t>(DeviceProps(device).totalGlobalMem) / 2;
#else
  (void)device;
  (void)bytes;
  return false;
#endif
}

absl::StatusOr<Fp8Matrix> QuantizeFp8(const at::Tensor& w, bool keep_transposed) {
#ifndef LLAVA_HAVE_FLOAT8_DTYPE
  (void)w;
  (void)keep_transposed;
  return absl::FailedPreconditionError(
      absl::StrCat("float8 tensors need libtorch >= 2.1; this one is libtorch ", TORCH_VERSION));
#else
  if (w.dim() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("a matrix to quantize has ", w.dim(), " dims"));
  }
  if (!at::isfinite(w).all().item<bool>()) {
    return absl::InvalidArgumentError(
        "a weight is not finite (inf or nan): cannot scale it to FP8");
  }
  E4m3Rows rows = QuantizeRowsE4m3(w);
  Fp8Matrix m;
  // Exact: every value is on the e4m3 grid already.
  m.data = rows.values.to(at::kFloat8_e4m3fn);
  rows.values = at::Tensor();
  m.scale = rows.scale.view({1, -1}).contiguous();
  if (keep_transposed) m.data_t = m.data.t().contiguous();
  return m;
#endif
}

Fp8Matrix ConcatFp8Rows(const std::vector<const Fp8Matrix*>& parts) {
  LM_CHECK(!parts.empty());
  const bool has_t = parts[0]->data_t.defined();
  std::vector<at::Tensor> data, scale, data_t;
  for (const Fp8Matrix* p : parts) {
    LM_CHECK(p->defined() && p->data_t.defined() == has_t &&
             p->data.size(1) == parts[0]->data.size(1));
    // As bytes: concatenation copies them, whatever the float8 kernels this libtorch has.
    data.push_back(p->data.view(at::kByte));
    scale.push_back(p->scale);
    if (has_t) data_t.push_back(p->data_t.view(at::kByte));
  }
  const at::ScalarType f8 = parts[0]->data.scalar_type();
  Fp8Matrix m;
  m.data = at::cat(data, 0).view(f8);
  m.scale = at::cat(scale, 1);
  if (has_t) m.data_t = at::cat(data_t, 1).view(f8);
  return m;
}

at::Tensor DequantizeFp8(const Fp8Matrix& m, at::ScalarType dtype) {
  return (m.data.to(at::kFloat) * m.scale.view({-1, 1})).to(dtype);
}

#ifdef LLAVA_HAVE_FP8
namespace {

struct Quantized {
  at::Tensor data;   // [M, K] float8
  at::Tensor scale;  // [M, 1] float32
};

// x2 [M, K] (float32/bf16/fp16, CUDA) scaled per row (times col_scale [K] where given).
Quantized QuantizeRows(const at::Tensor& x2, const at::Tensor& col_scale, bool e5m2) {
  at::Tensor x = x2.contiguous();
  const int64_t rows = x.size(0), cols = x.size(1);
  const c10::cuda::CUDAGuard guard(x.device());
  Quantized q;
  q.data = at::empty({rows, cols}, x.options().dtype(e5m2 ? at::kFloat8_e5m2 : at::kFloat8_e4m3fn));
  q.scale = at::empty({rows, 1}, x.options().dtype(at::kFloat));
  at::Tensor cs = col_scale.defined() ? col_scale.to(at::kFloat).contiguous() : at::Tensor();
  cuda::LaunchQuantizeRowsFloat8(
      ElementTypeOf(x), e5m2 ? cuda::Float8Type::kE5m2 : cuda::Float8Type::kE4m3, x.data_ptr(),
      cs.defined() ? cs.data_ptr<float>() : nullptr, q.data.data_ptr(), q.scale.data_ptr<float>(),
      rows, cols, c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return q;
}

// Whether _scaled_mm writes float32 with row-wise scales on this device: through cuBLAS
// on sm_90 and later; the CUTLASS kernel it uses before writes bfloat16 only.
bool Float32OutOk(const at::Device& device) { return DeviceProps(device).major >= 9; }

class Fp8LinearFunction : public torch::autograd::Function<Fp8LinearFunction> {
 public:
  // x: the input (for its gradient and shape); xq/xs its quantized rows; w/ws/wt the
  // matrix (wt: its transposed copy, or w again when has_t is false).
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& xq, const at::Tensor& xs, const at::Tensor& w,
                            const at::Tensor& ws, const at::Tensor& wt, bool has_t,
                            int64_t out_dtype, int64_t backward, bool fast_accum) {
    ctx->save_for_backward({w, ws, wt});
    ctx->saved_data["has_t"] = has_t;
    ctx->saved_data["backward"] = backward;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    const auto want = static_cast<at::ScalarType>(out_dtype);
    const at::ScalarType mm_out =
        want == at::kFloat && !Float32OutOk(x.device()) ? at::kBFloat16 : want;
    at::Tensor y = at::_scaled_mm(xq, w.t(), xs, ws, c10::nullopt, c10::nullopt, mm_out,
                                  fast_accum);  // [M, N]
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = w.size(0);
    return y.to(want).view(shape);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& w = saved[0];   // [N, K]
    const at::Tensor& ws = saved[1];  // [1, N]
    const bool has_t = ctx->saved_data["has_t"].toBool();
    const auto mode = static_cast<Fp8Backward>(ctx->saved_data["backward"].toInt());
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const at::Tensor& g = grads[0];  // [..., N]
    const int64_t n = w.size(0), k = w.size(1);
    at::Tensor g2 = g.reshape({-1, n});
    at::Tensor gx;
    if (mode == Fp8Backward::kBf16) {
      // The weight dequantized for this call: the matmul in bf16 as the dense model's.
      gx = at::mm(g2.to(at::kBFloat16), DequantizeFp8(Fp8Matrix{w, ws, {}}, at::kBFloat16));
    } else {
      // dx = dy W = (dy * scale) data: the weight's row scales multiply dy's columns,
      // folded into dy's own per-row quantization.
      Quantized gq = QuantizeRows(g2, ws.view({n}), mode == Fp8Backward::kE5m2);
      at::Tensor wt = has_t ? saved[2] : w.t().contiguous();  // [K, N]
      at::Tensor ones = at::ones({1, k}, ws.options());
      gx = at::_scaled_mm(gq.data, wt.t(), gq.scale, ones, c10::nullopt, c10::nullopt,
                          at::kBFloat16, false);
    }
    std::vector<int64_t> shape = g.sizes().vec();
    shape.back() = k;
    const at::Tensor none;
    return {gx.to(x_dtype).view(shape), none, none, none, none, none, none, none, none, none};
  }
};

}  // namespace

Fp8Input QuantizeFp8Input(const at::Tensor& x) {
  Fp8Input in;
  in.x = x;
  Quantized q = QuantizeRows(x.detach().reshape({-1, x.size(-1)}), at::Tensor(), false);
  in.data = std::move(q.data);
  in.scale = std::move(q.scale);
  return in;
}

at::Tensor Fp8Linear(const Fp8Input& in, const Fp8Matrix& w, at::ScalarType out_dtype,
                     const ForwardOptions& options) {
  const bool has_t = w.data_t.defined();
  return Fp8LinearFunction::apply(in.x, in.data, in.scale, w.data, w.scale,
                                  has_t ? w.data_t : w.data, has_t, static_cast<int64_t>(out_dtype),
                                  static_cast<int64_t>(options.fp8_backward),
                                  options.fp8_fast_accum);
}

#else  // !LLAVA_HAVE_FP8

// No FP8 model can be made in this build (LoadLlama asks Fp8Supported first), so no
// forward pass reaches these.
Fp8Input QuantizeFp8Input(const at::Tensor& x) {
  LM_CHECK(false) << "FP8 input in a build without FP8, shape " << x.sizes();
  return {};
}

at::Tensor Fp8Linear(const Fp8Input& in, const Fp8Matrix& w, at::ScalarType out_dtype,
                     const ForwardOptions& options) {
  (void)in;
  (void)w;
  (void)options;
  LM_CHECK(false) << "FP8 linear layer in a build without FP8, out " << out_dtype;
  return {};
}

#endif  // LLAVA_HAVE_FP8

}  // namespace llava
