#include "common/llama_weights.h"

#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "common/status_macros.h"

namespace llava {
namespace {

// The published meta-llama/Llama-3.1-8B-Instruct config.json.
constexpr char kLlama31_8B[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "vocab_size": 128256})";

// The published meta-llama/Llama-3.1-70B-Instruct config.json.
constexpr char kLlama31_70B[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 8192, "initializer_range": 0.02, "intermediate_size": 28672,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "vocab_size": 128256})";

// A small model of the same family and the real vocabulary, for smoke runs.
constexpr char kTiny[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
  "hidden_size": 64, "intermediate_size": 172, "num_attention_heads": 4,
  "num_hidden_layers": 2, "num_key_value_heads": 2, "head_dim": 16,
  "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
  "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192},
  "tie_word_embeddings": true, "vocab_size": 128256})";

// HF's rope init, in float32 exactly as transformers computes it (the pow of a python
// float by a float32 tensor), then the llama3 band scaling of Llama 3.1.
at::Tensor RopeInvFreq(const LlamaConfig& c) {
  at::Tensor exponent =
      at::arange(0, c.head_dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(c.head_dim);
  at::Tensor inv_freq = 1.0 / at::pow(c.rope.theta, exponent);  // [hd/2]
  if (c.rope.type != RopeType::kLlama3) return inv_freq;
  const RopeConfig& r = c.rope;
  const double old_len = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / r.low_freq_factor;
  const double high_freq_wavelen = old_len / r.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / r.factor, inv_freq);
  at::Tensor smooth =
      (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  at::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

struct Loader {
  const Checkpoint& ckpt;
  LoadOptions options;

  absl::StatusOr<at::Tensor> Get(const std::string& name, std::vector<int64_t> shape) const {
    LM_ASSIGN_OR_RETURN(at::Tensor t, ckpt.LoadWithShape(name, shape, options));
    // bfloat16 and float32 reach 3e38, float16 only 65,504: a weight beyond it would
    // become inf and poison every activation it touches.
    if (options.dtype == at::kHalf && !at::isfinite(t).all().item<bool>()) {
      return absl::InvalidArgumentError(
          absl::StrCat(ckpt.path(), ": tensor ", name,
                       " does not fit float16 (a value beyond +-65504, or "
                       "not finite): load this checkpoint as bfloat16 (--dtype bfloat16)"));
    }
    return t;
  }

  // The [D] RMSNorm weights, in float32 for a bf16/fp16 model: see LlamaModel.
  absl::StatusOr<at::Tensor> GetNorm(const std::string& name, int64_t d) const {
    LoadOptions o = options;
    o.dtype = NormDtype(options.dtype.value_or(at::kFloat));
    return ckpt.LoadWithShape(name, {d}, o);
  }
};

// Where each decoder matrix goes as it is loaded or made: its dense field, or quantized
// into its FP8 field (the dense tensor then dropped before the next one is read).
struct MatrixSink {
  bool fp8 = false;
  bool keep_transposed = false;
  bool fuse = false;

  // After a layer's matrices are Put: q/k/v and gate/up each as one matrix where all of
  // them are FP8.
  void Finish(Fp8LayerWeights* w) const {
    if (!fuse) return;
    auto fuse_into = [](std::vector<Fp8Matrix*> parts, Fp8Matrix* fused) {
      for (const Fp8Matrix* p : parts) {
        if (!p->defined()) return;
      }
      *fused = ConcatFp8Rows(std::vector<const Fp8Matrix*>(parts.begin(), parts.end()));
      for (Fp8Matrix* p : parts) *p = Fp8Matrix();
    };
    fuse_into({&w->q_proj, &w->k_proj, &w->v_proj}, &w->qkv);
    fuse_into({&w->gate_proj, &w->up_proj}, &w->gate_up);
  }

  absl::Status Put(const std::string& name, at::Tensor w, at::Tensor* dense, Fp8Matrix* q) const {
    if (!fp8 || !Fp8Shape(w.size(0), w.size(1))) {
      *dense = std::move(w);
      return absl::OkStatus();
    }
    absl::StatusOr<Fp8Matrix> m = QuantizeFp8(w, keep_transposed);
    if (!m.ok()) {
      return absl::Status(m.status().code(),
                          absl::StrCat("tensor ", name, ": ", m.status().message()));
    }
    *q = *std::move(m);
    return absl::OkStatus();
  }
};

// A decoder layer's seven matrices by their checkpoint names and shapes, for `fn(name,
// shape, dense field, fp8 field)` (const fields for a const layer).
template <typename Layer, typename Fn>
absl::Status ForEachMatrix(const LlamaConfig& c, int64_t i, Layer* w, Fn fn) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  auto& e = w->fp8;
  LM_RETURN_IF_ERROR(fn(p + "self_attn.q_proj.weight", {q, d}, &w->q_proj, &e.q_proj));
  LM_RETURN_IF_ERROR(fn(p + "self_attn.k_proj.weight", {kv, d}, &w->k_proj, &e.k_proj));
  LM_RETURN_IF_ERROR(fn(p + "self_attn.v_proj.weight", {kv, d}, &w->v_proj, &e.v_proj));
  LM_RETURN_IF_ERROR(fn(p + "self_attn.o_proj.weight", {d, q}, &w->o_proj, &e.o_proj));
  LM_RETURN_IF_ERROR(fn(p + "mlp.gate_proj.weight", {f, d}, &w->gate_proj, &e.gate_proj));
  LM_RETURN_IF_ERROR(fn(p + "mlp.up_proj.weight", {f, d}, &w->up_proj, &e.up_proj));
  LM_RETURN_IF_ERROR(fn(p + "mlp.down_proj.weight", {d, f}, &w->down_proj, &e.down_proj));
  return absl::OkStatus();
}

absl::Status LoadLayer(const Loader& l, const MatrixSink& sink, const LlamaConfig& c, int64_t i,
                       LlamaLayerWeights* w) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const int64_t d = c.hidden_size;
  LM_ASSIGN_OR_RETURN(w->input_layernorm, l.GetNorm(p + "input_layernorm.weight", d));
  LM_ASSIGN_OR_RETURN(w->post_attention_layernorm,
                      l.GetNorm(p + "post_attention_layernorm.weight", d));
  LM_RETURN_IF_ERROR(ForEachMatrix(c, i, w,
                                   [&](const std::string& name, std::vector<int64_t> shape,
                                       at::Tensor* dense, Fp8Matrix* q) -> absl::Status {
                                     LM_ASSIGN_OR_RETURN(at::Tensor t,
                                                         l.Get(name, std::move(shape)));
                                     return sink.Put(name, std::move(t), dense, q);
                                   }));
  sink.Finish(&w->fp8);
  return absl::OkStatus();
}

MatrixSink SinkFor(const LlamaConfig& c, const ModelOptions& options) {
  MatrixSink sink;
  sink.fp8 = options.weights == WeightFormat::kFp8;
  if (sink.fp8) {
    sink.keep_transposed = options.fp8_transposed_copy.value_or(
        // One byte a weight, twice with the copies.
        Fp8TransposedCopyFits(options.device, 2 * c.DecoderMatrixParameters()));
    sink.fuse = options.fp8_fuse;
  }
  return sink;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadCheckpoint(const std::string& dir,
                                                           const ModelOptions& options) {
  LM_ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(dir));
  LM_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  auto model = std::make_unique<LlamaModel>();
  model->config = config;
  model->device = options.device;
  model->dtype = options.dtype;
  model->format = options.weights;
  model->source = dir;
  const MatrixSink sink = SinkFor(config, options);
  Loader l{*ckpt, LoadOptions{options.dtype, options.device}};
  LlamaWeights& w = model->weights;
  const int64_t v = config.vocab_size, d = config.hidden_size;
  LM_ASSIGN_OR_RETURN(w.embed_tokens, l.Get("model.embed_tokens.weight", {v, d}));
  w.layers.resize(config.num_hidden_layers);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    LM_RETURN_IF_ERROR(LoadLayer(l, sink, config, i, &w.layers[i]));
  }
  LM_ASSIGN_OR_RETURN(w.norm, l.GetNorm("model.norm.weight", d));
  if (config.tie_word_embeddings) {
    w.lm_head = w.embed_tokens;
  } else {
    LM_ASSIGN_OR_RETURN(w.lm_head, l.Get("lm_head.weight", {v, d}));
  }
  model->inv_freq = RopeInvFreq(config).to(options.device);
  return model;
}

}  // namespace

at::ScalarType NormDtype(at::ScalarType model_dtype) {
  return at::promote_types(model_dtype, at::kFloat);
}

absl::StatusOr<LlamaConfig> SyntheticConfig(const std::string& name) {
  if (name == "llama-3.1-8b") return ParseLlamaConfig(kLlama31_8B, "synthetic:llama-3.1-8b");
  if (name == "llama-3.1-70b") return ParseLlamaConfig(kLlama31_70B, "synthetic:llama-3.1-70b");
  if (name == "tiny") return ParseLlamaConfig(kTiny, "synthetic:tiny");
  return absl::InvalidArgumentError(absl::StrCat("unknown synthetic model '", name,
                                                 "' (known: llama-3.1-8b, llama-3.1-70b, tiny)"));
}

absl::StatusOr<std::unique_ptr<LlamaModel>> MakeRandomLlama(const LlamaConfig& c,
                                                            const ModelOptions& options) {
  auto model = std::make_unique<LlamaModel>();
  model->config = c;
  model->device = options.device;
  model->dtype = options.dtype;
  model->format = options.weights;
  const MatrixSink sink = SinkFor(c, options);
  at::Generator gen = options.device.is_cuda()
                          ? at::globalContext().defaultGenerator(options.device)
                          : at::detail::createCPUGenerator(options.synthetic_seed);
  if (options.device.is_cuda()) gen.set_current_seed(options.synthetic_seed);
  const at::TensorOptions to = at::TensorOptions().dtype(options.dtype).device(options.device);
  // Made directly in the target dtype on the target device: an 8B model never passes
  // through host memory or float32.
  auto normal = [&](std::vector<int64_t> shape) {
    if (options.dtype == at::kHalf) {
      // A float16 run of a real Llama 3.1 holds its bf16 weights converted (exactly):
      // float16 values with bf16's 8 significant bits. The synthetic model does the same:
      // a step's time depends on the values after all (an H100's matmul power, so its
      // clock, follows how many bits toggle): full 11-bit random weights ran 2.5% slower.
      return at::empty(shape, to.dtype(at::kBFloat16)).normal_(0.0, 0.02, gen).to(at::kHalf);
    }
    return at::empty(shape, to).normal_(0.0, 0.02, gen);
  };
  auto ones = [&](int64_t n) { return at::ones({n}, to.dtype(NormDtype(options.dtype))); };
  const int64_t d = c.hidden_size;
  LlamaWeights& w = model->weights;
  w.embed_tokens = normal({c.vocab_size, d});
  w.layers.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LlamaLayerWeights& l = w.layers[i];
    l.input_layernorm = ones(d);
    l.post_attention_layernorm = ones(d);
    LM_RETURN_IF_ERROR(ForEachMatrix(
        c, i, &l,
        [&](const std::string& name, std::vector<int64_t> shape, at::Tensor* dense, Fp8Matrix* fq) {
          return sink.Put(name, normal(std::move(shape)), dense, fq);
        }));
    sink.Finish(&l.fp8);
  }
  w.norm = ones(d);
  w.lm_head = c.tie_word_embeddings ? w.embed_tokens : normal({c.vocab_size, d});
  model->inv_freq = RopeInvFreq(c).to(options.device);
  return model;
}

absl::Status ValidateModelOptions(const std::string& spec, const ModelOptions& options) {
#if TORCH_VERSION_MAJOR < 2
  // libtorch 1.x has no float16 matmul on the CPU: refused here, not at the first step.
  if (options.dtype == at::kHalf && options.device.is_cpu()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", spec, ": float16 on the CPU needs libtorch 2.x (this is ",
                     TORCH_VERSION, "); use float32 or bfloat16, or a CUDA device"));
  }
#endif
  if (options.weights != WeightFormat::kFp8) return absl::OkStatus();
  // --weights fp8 computes in bfloat16 on a GPU that runs FP8 matmuls.
  if (options.dtype != at::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", spec, ": --weights fp8 computes in bfloat16, not ",
                     at::toString(options.dtype), " (--dtype bfloat16, or auto on a GPU)"));
  }
  absl::Status s = Fp8Supported(options.device);
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat("model ", spec, ": ", s.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<const LlamaModel>> LoadLlama(const std::string& spec,
                                                            const ModelOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  LM_RETURN_IF_ERROR(ValidateModelOptions(spec, options));
  std::unique_ptr<LlamaModel> model;
  try {
    if (absl::StartsWith(spec, "synthetic:")) {
      LM_ASSIGN_OR_RETURN(LlamaConfig config, SyntheticConfig(spec.substr(10)));
      LM_ASSIGN_OR_RETURN(model, MakeRandomLlama(config, options));
    } else {
      if (!IsDirectory(spec)) {
        return absl::NotFoundError(absl::StrCat(
            "model '", spec, "' is neither a checkpoint directory nor synthetic:NAME"));
      }
      LM_ASSIGN_OR_RETURN(model, LoadCheckpoint(spec, options));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("loading model ", spec, ": ", e.what_without_backtrace()));
  }
  model->source = spec;
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  LM_LOG(INFO) << "loaded " << spec << " on " << options.device << " as "
               << at::toString(options.dtype)
               << (options.weights == WeightFormat::kFp8 ? " with fp8 matrices" : "") << " ("
               << static_cast<double>(WeightBytes(*model)) / (1ull << 30) << " GiB) in " << secs
               << " s: " << DescribeConfig(model->config);
  return std::unique_ptr<const LlamaModel>(std::move(model));
}

int64_t Fp8LayerWeights::bytes() const {
  int64_t n = 0;
  for (const Fp8Matrix* m :
       {&q_proj, &k_proj, &v_proj, &o_proj, &gate_proj, &up_proj, &down_proj, &qkv, &gate_up}) {
    n += m->bytes();
  }
  return n;
}

int64_t WeightBytes(const LlamaModel& m) {
  auto bytes = [](const at::Tensor& t) {
    return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : int64_t{0};
  };
  const LlamaWeights& w = m.weights;
  int64_t n = bytes(w.embed_tokens) + bytes(w.norm) + bytes(m.inv_freq);
  if (!w.lm_head.is_same(w.embed_tokens)) n += bytes(w.lm_head);
  for (int64_t i = 0; i < static_cast<int64_t>(w.layers.size()); ++i) {
    const LlamaLayerWeights& l = w.layers[i];
    n += bytes(l.input_layernorm) + bytes(l.post_attention_layernorm);
    // Each matrix is in its dense field or among the FP8 ones.
    ForEachMatrix(m.config, i, &l,
                  [&](const std::string&, const std::vector<int64_t>&, const at::Tensor* dense,
                      const Fp8Matrix*) {
                    n += bytes(*dense);
                    return absl::OkStatus();
                  })
        .IgnoreError();  // counting never fails
    n += l.fp8.bytes();
  }
  return n;
}

absl::StatusOr<WeightFormat> ParseWeightFormat(const std::string& text) {
  if (text == "dense") return WeightFormat::kDense;
  if (text == "fp8") return WeightFormat::kFp8;
  return absl::InvalidArgumentError(absl::StrCat(
      "bad --weights '", text, "' (dense: the matrices in --dtype; fp8: float8 e4m3)"));
}

const char* WeightFormatName(WeightFormat format) {
  return format == WeightFormat::kFp8 ? "fp8" : "dense";
}

absl::StatusOr<at::Device> ParseDevice(const std::string& text) {
  if (text == "auto") {
    return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  }
  try {
    at::Device device(text);
    if (device.is_cuda() && !at::hasCUDA()) {
      return absl::FailedPreconditionError(
          absl::StrCat("device '", text, "' asked for, but this build or machine has no CUDA"));
    }
    return device;
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad device '", text, "' (cpu, cuda, cuda:N or auto)"));
  }
}

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& text) {
  if (text == "float32" || text == "fp32" || text == "float") return at::kFloat;
  if (text == "bfloat16" || text == "bf16") return at::kBFloat16;
  if (text == "float16" || text == "fp16" || text == "half") return at::kHalf;
  return absl::InvalidArgumentError(
      absl::StrCat("bad dtype '", text, "' (float32, bfloat16 or float16)"));
}

}  // namespace llava
