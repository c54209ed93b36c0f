#include "launch/cmd_bench.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>

#ifdef LLAVA_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/elapsed.h"
#include "common/eval_report.h"
#include "common/file_util.h"
#include "common/llama_forward.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/tensor_compare.h"
#include "common/train_checkpoint.h"
#include "launch/flags_common.h"
#include "launch/kineto_trace.h"
#include "launch/vlm_setup.h"
#include "worker/evaluator.h"
#include "worker/trainer.h"

ABSL_FLAG(std::string, mode, "both", "bench: train, eval or both");
ABSL_FLAG(std::string, train_batches, "64,256", "bench: training batch sizes, comma-separated");
ABSL_FLAG(std::string, eval_batches, "500,1000", "bench: eval batch sizes, comma-separated");
ABSL_FLAG(int64_t, steps, 10, "bench: timed steps (eval: timed batches) per row");
ABSL_FLAG(int64_t, warmup, 3, "bench: untimed steps before each row");
ABSL_FLAG(bool, prefix_kv, true,
          "bench: the product's shared prompt prefix (false: the whole prompt every batch)");
ABSL_FLAG(std::string, residual, "fp32",
          "bench: residual stream dtype of a bf16 model, fp32 (the default) or model");
ABSL_FLAG(bool, fold_gqa, true,
          "bench: grouped-query attention reads the keys/values in place (false: copied per "
          "query head)");
ABSL_FLAG(bool, fused_swiglu, true,
          "bench: the MLP's silu(gate) * up as one CUDA kernel each way (false: ATen's ops)");
ABSL_FLAG(bool, fused_rope, true, "bench: RoPE as one CUDA kernel each way (false: ATen's ops)");
ABSL_FLAG(bool, fused_residual_norm, true,
          "bench: the residual adds and RMSNorms as one CUDA kernel each way (false: ATen's "
          "add, norm and conversion, and their backward)");
ABSL_FLAG(bool, fused_decode_attention, true,
          "bench: a decode step's attention as one CUDA kernel per layer (false: two batched "
          "matmuls and a softmax)");
ABSL_FLAG(bool, lean_elementwise, true,
          "bench: fused RMSNorm and fewer RoPE passes (false: transformers' op-by-op formulas)");
ABSL_FLAG(int64_t, answer_tokens, 7,
          "bench: also time eval with this budget, what early stop at the answer's end runs "
          "(0: skip)");
ABSL_FLAG(bool, check, false,
          "bench: also compare the fast path with the plain path: training loss and gradient "
          "against the plain float32 path on one batch, eval answers on the test digits");
ABSL_FLAG(int64_t, check_batch, 16, "bench: training batch of the --check comparison");
ABSL_FLAG(std::string, json_out, "", "bench: write the results here as JSON");
ABSL_FLAG(std::string, bench_projector, "",
          "bench: a trained projector checkpoint for the eval rows and the eval --check (default: "
          "a random projector; a trained one gives decided answers to compare)");
ABSL_FLAG(std::string, profile_dir, "",
          "bench: after each row's timed steps, run one more under libtorch's profiler and write "
          "its Chrome trace here as <mode>-b<batch>[-t<tokens>].json (bench/profile_summary.py "
          "sums its kernels); empty: no profiling");
ABSL_FLAG(double, peak_tflops, 989.0,
          "bench: the device's dense bf16 peak for MFU (H100 SXM: 989 TFLOP/s)");

namespace llava {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Waits for every queued kernel of the device's current stream (nothing on the CPU).
void Sync(const at::Device& device) {
  if (device.is_cpu()) return;
  c10::impl::VirtualGuardImpl impl(device.type());
  impl.getStream(device).synchronize();
}

#ifdef LLAVA_HAVE_CUDA
// "cuda" without an index means the current device.
c10::DeviceIndex CudaIndex(const at::Device& device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
#endif

void ResetPeakMemory(const at::Device& device) {
#ifdef LLAVA_HAVE_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(CudaIndex(device));
#endif
}

// Peak bytes held by tensors since the last reset, in GiB (-1 off CUDA).
double PeakMemoryGiB(const at::Device& device) {
#ifdef LLAVA_HAVE_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(CudaIndex(device));
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1ull << 30);  // 0: all pools
  }
#endif
  return -1;
}

absl::StatusOr<std::vector<int64_t>> ParseSizes(const std::string& flag, const std::string& text) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", part, "' is not a size"));
    }
    out.push_back(v);
  }
  return out;
}

struct Timing {
  double median = 0, p10 = 0, p90 = 0;
};

Timing Summarize(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  auto at = [&](double q) { return t[static_cast<size_t>(std::lround(q * (t.size() - 1)))]; };
  const size_t n = t.size();
  Timing s;
  s.median = n % 2 == 1 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  s.p10 = at(0.1);
  s.p90 = at(0.9);
  return s;
}

// Model FLOPs of one training sample: forward and the backward to the inputs (no weight
// gradients), 2 + 2 FLOP per parameter and token, over the tokens from the image on, plus
// the lm_head at the answer positions (attention scores left out: under 1% here).
double TrainFlopsPerSample(const LlamaConfig& c, int64_t tokens_from_image, int64_t answer) {
  return 4.0 * (static_cast<double>(c.DecoderMatrixParameters()) * tokens_from_image +
                static_cast<double>(c.hidden_size) * c.vocab_size * answer);
}

// `set` repeated until it holds at least n images.
MnistSet Tiled(const MnistSet& set, int64_t n) {
  MnistSet out;
  out.rows = set.rows;
  out.cols = set.cols;
  while (out.size() < n) {
    const int64_t take = std::min(set.size(), n - out.size());
    out.pixels.insert(out.pixels.end(), set.pixels.begin(),
                      set.pixels.begin() + take * set.image_size());
    out.labels.insert(out.labels.end(), set.labels.begin(), set.labels.begin() + take);
  }
  return out;
}

// Everything `bench` takes from its flags, read in one place (BenchSettingsFromFlags) so
// that the phases below take plain values; the flags' help says what each means.
struct BenchSettings {
  std::string mode;  // train, eval or both
  std::vector<int64_t> train_batches;
  std::vector<int64_t> eval_batches;
  int64_t steps = 0;
  int64_t warmup = 0;
  bool prefix_kv = false;
  std::string residual;  // fp32 or model
  bool fold_gqa = false;
  bool fused_swiglu = false;
  bool fused_rope = false;
  bool fused_decode_attention = false;
  bool fused_residual_norm = false;
  bool lean_elementwise = false;
  int64_t max_new_tokens = 0;  // the eval rows' budget and the eval --check's
  int64_t answer_tokens = 0;   // 0: no rows at the answer's budget
  bool check = false;
  int64_t check_batch = 0;
  std::string json_out;        // empty: no JSON file
  std::string profile_dir;     // empty: no traces
  std::string projector_path;  // --bench_projector; empty: a random projector
  uint64_t seed = 0;           // the random projector's
  double peak_tflops = 0;
  PromptConfig prompt;
  // The model as it is loaded, and the same model dense (the FP8 --check's reference).
  std::string model_spec;
  ModelOptions dense_model;

  bool RunsTrain() const { return mode != "eval"; }
  bool RunsEval() const { return mode != "train"; }
  absl::Status Validate() const;
};

absl::Status BenchSettings::Validate() const {
  if (mode != "train" && mode != "eval" && mode != "both") {
    return absl::InvalidArgumentError("--mode must be train, eval or both, got '" + mode + "'");
  }
  if (steps <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--steps must be > 0, got ", steps));
  }
  if (warmup < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--warmup must be >= 0, got ", warmup));
  }
  if (residual != "fp32" && residual != "model") {
    return absl::InvalidArgumentError("--residual must be fp32 or model, got '" + residual + "'");
  }
  return absl::OkStatus();
}

// The only place bench reads its flags (the model, tokenizer and data flags are read where
// they are loaded: LoadInputs).
absl::StatusOr<BenchSettings> BenchSettingsFromFlags() {
  BenchSettings s;
  s.mode = absl::GetFlag(FLAGS_mode);
  s.steps = absl::GetFlag(FLAGS_steps);
  s.warmup = absl::GetFlag(FLAGS_warmup);
  s.prefix_kv = absl::GetFlag(FLAGS_prefix_kv);
  s.residual = absl::GetFlag(FLAGS_residual);
  s.fold_gqa = absl::GetFlag(FLAGS_fold_gqa);
  s.fused_swiglu = absl::GetFlag(FLAGS_fused_swiglu);
  s.fused_rope = absl::GetFlag(FLAGS_fused_rope);
  s.fused_decode_attention = absl::GetFlag(FLAGS_fused_decode_attention);
  s.fused_residual_norm = absl::GetFlag(FLAGS_fused_residual_norm);
  s.lean_elementwise = absl::GetFlag(FLAGS_lean_elementwise);
  s.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  s.answer_tokens = absl::GetFlag(FLAGS_answer_tokens);
  s.check = absl::GetFlag(FLAGS_check);
  s.check_batch = absl::GetFlag(FLAGS_check_batch);
  s.json_out = absl::GetFlag(FLAGS_json_out);
  s.profile_dir = absl::GetFlag(FLAGS_profile_dir);
  s.projector_path = absl::GetFlag(FLAGS_bench_projector);
  s.seed = absl::GetFlag(FLAGS_seed);
  s.peak_tflops = absl::GetFlag(FLAGS_peak_tflops);
  s.model_spec = absl::GetFlag(FLAGS_model);
  LM_ASSIGN_OR_RETURN(s.dense_model, ModelOptionsFromFlags());
  s.dense_model.weights = WeightFormat::kDense;
  LM_ASSIGN_OR_RETURN(s.train_batches,
                      ParseSizes("train_batches", absl::GetFlag(FLAGS_train_batches)));
  LM_ASSIGN_OR_RETURN(s.eval_batches,
                      ParseSizes("eval_batches", absl::GetFlag(FLAGS_eval_batches)));
  LM_ASSIGN_OR_RETURN(s.prompt, PromptConfigFromFlags());
  LM_RETURN_IF_ERROR(s.Validate());
  return s;
}

// What the rows run on: the model with bench's levers, the prompts and the digits.
struct BenchInputs {
  VlmRuntime rt;
  ForwardOptions forward;  // the levers measured
  double load_s = 0;       // making or loading the model
  PromptBuilder prompts;
  MnistSet train;
  MnistSet test;
};

absl::StatusOr<BenchInputs> LoadInputs(const BenchSettings& s) {
  BenchInputs in;
  const auto load_start = Clock::now();
  LM_ASSIGN_OR_RETURN(in.rt, LoadRuntimeFromFlags());
  Sync(in.rt.model->device);
  // The common flags' options with bench's own laid over them.
  in.forward = in.rt.forward;
  in.forward.fp32_residual = s.residual == "fp32";
  in.forward.fold_gqa = s.fold_gqa;
  in.forward.lean_elementwise = s.lean_elementwise;
  in.forward.fused_swiglu = s.fused_swiglu;
  in.forward.fused_rope = s.fused_rope;
  in.forward.fused_decode_attention = s.fused_decode_attention;
  in.forward.fused_residual_norm = s.fused_residual_norm;
  in.load_s = SecondsSince(load_start);
  LM_ASSIGN_OR_RETURN(in.prompts, PromptBuilder::Create(*in.rt.tokenizer, s.prompt));
  LM_ASSIGN_OR_RETURN(in.train, LoadMnistFromFlags("train", "", "", -1));
  LM_ASSIGN_OR_RETURN(in.test, LoadMnistFromFlags("test", "", "", -1));
  return in;
}

// What every row and check reads.
struct Ctx {
  const BenchSettings& settings;
  const LlamaModel& model;
  const ForwardOptions& forward;  // the levers measured
  const Tokenizer& tokenizer;
  const PromptBuilder& prompts;
  const MnistSet& train;
  const MnistSet& test;
};

// Runs `step` warmup + steps times, synchronizing the device around each, and times the
// last `steps`; peak memory counts from the first. With --profile_dir, one more step runs
// under the profiler (after the timed ones, so that it does not change them) and its trace
// is written as <name>.json there.
absl::StatusOr<Timing> TimeSteps(const Ctx& x, int64_t warmup, int64_t steps,
                                 const std::string& name,
                                 const std::function<absl::Status()>& step) {
  const at::Device& device = x.model.device;
  std::vector<double> times;
  Sync(device);
  ResetPeakMemory(device);
  for (int64_t i = 0; i < warmup + steps; ++i) {
    Sync(device);
    const auto t0 = Clock::now();
    LM_RETURN_IF_ERROR(step());
    Sync(device);
    if (i >= warmup) times.push_back(SecondsSince(t0));
  }
  if (const std::string& dir = x.settings.profile_dir; !dir.empty()) {
    KinetoTrace trace;
    LM_RETURN_IF_ERROR(trace.Start(device));
    LM_RETURN_IF_ERROR(step());
    Sync(device);
    LM_RETURN_IF_ERROR(MakeDirs(dir));
    const std::string path = absl::StrCat(dir, "/", name, ".json");
    LM_RETURN_IF_ERROR(trace.Stop(path));
    LM_LOG(INFO) << "bench: profile of one " << name << " step in " << path;
  }
  return Summarize(std::move(times));
}

TrainConfig BenchTrainConfig(const Ctx& x, int64_t batch, int64_t steps) {
  TrainConfig c;
  c.model_spec = x.model.source;
  c.projector.output_dim = x.model.config.hidden_size;
  c.projector.image_tokens = x.prompts.config().image_tokens;
  c.batch_size = batch;
  c.train_digits = -1;
  c.max_steps = steps;
  c.epochs = (steps * batch) / std::max<int64_t>(x.train.size(), 1) + 1;
  c.reuse_prefix_kv = x.settings.prefix_kv;
  return c;
}

absl::StatusOr<json> BenchTrain(const Ctx& x, int64_t batch) {
  const int64_t warmup = x.settings.warmup, steps = x.settings.steps;
  // One more step for the profile, if asked.
  const int64_t profiled = x.settings.profile_dir.empty() ? 0 : 1;
  TrainConfig config = BenchTrainConfig(x, batch, warmup + steps + profiled);
  LM_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                      Trainer::Create(x.model, x.forward, x.prompts, x.train, config, nullptr));
  double loss = 0;
  int64_t tokens = 0;
  // The product's step, as `train` and the worker run it.
  auto step = [&]() -> absl::Status {
    const std::vector<PlannedSample> samples = trainer->plan().StepSamples(trainer->step());
    StepStats stats = trainer->ComputeShareGradients(
        samples, static_cast<double>(trainer->AnswerTokens(samples)));
    LM_RETURN_IF_ERROR(trainer->ApplyGradients(&stats));
    loss = stats.loss();
    tokens = stats.tokens;
    return absl::OkStatus();
  };
  LM_ASSIGN_OR_RETURN(const Timing t,
                      TimeSteps(x, warmup, steps, absl::StrCat("train-b", batch), step));
  const int64_t answer = tokens / batch;
  // Tokens from the image on in this prompt: everything after the fixed prefix.
  const int64_t from_image = x.prompts.BuildGeneration(0).ids.size(1) -
                             x.prompts.BuildGeneration(0).image_position + answer;
  const double flops = TrainFlopsPerSample(x.model.config, from_image, answer);
  const double per_s = batch / t.median;
  return json{{"mode", "train"},
              {"batch", batch},
              {"prefix_kv", config.reuse_prefix_kv},
              {"median_s", t.median},
              {"p10_s", t.p10},
              {"p90_s", t.p90},
              {"per_s", per_s},
              {"steps", steps},
              {"last_loss", loss},
              // float16 only: the loss scale at the end, and updates skipped for overflow
              {"loss_scale", trainer->loss_scaler().scale()},
              {"skipped_steps", trainer->loss_scaler().skipped_steps()},
              {"tokens_from_image", from_image},
              {"model_tflop_per_sample", flops / 1e12},
              {"mfu", per_s * flops / (x.settings.peak_tflops * 1e12)},
              {"peak_gib", PeakMemoryGiB(x.model.device)}};
}

absl::StatusOr<json> BenchEval(const Ctx& x, Projector& projector, int64_t batch,
                               int64_t new_tokens, bool stop_at_eos) {
  const int64_t warmup = std::min<int64_t>(x.settings.warmup, 2);
  const int64_t steps = x.settings.steps;
  const MnistSet images = Tiled(x.test, batch);
  EvalInputs in{&x.model, &projector, &x.prompts, &x.tokenizer, &images, x.forward};
  EvalConfig config;
  config.batch_size = batch;
  config.max_new_tokens = new_tokens;
  config.stop_at_eos = stop_at_eos;
  config.reuse_prefix_kv = x.settings.prefix_kv;
  int64_t answered = 0;
  // The product's evaluation of one batch of images under one question.
  auto step = [&]() -> absl::Status {
    EvalReport report({x.prompts.config().questions[0]});
    LM_RETURN_IF_ERROR(EvaluateRange(in, 0, batch, config, &report));
    answered = report.NumSamples();
    return absl::OkStatus();
  };
  LM_ASSIGN_OR_RETURN(
      const Timing t,
      TimeSteps(x, warmup, steps, absl::StrCat("eval-b", batch, "-t", new_tokens), step));
  if (answered != batch) return absl::InternalError("eval answered the wrong number of images");
  return json{{"mode", "eval"},
              {"batch", batch},
              {"prefix_kv", config.reuse_prefix_kv},
              {"new_tokens", new_tokens},
              {"stop_at_eos", stop_at_eos},
              {"median_s", t.median},
              {"p10_s", t.p10},
              {"p90_s", t.p90},
              {"per_s", batch / t.median},
              {"steps", steps},
              {"peak_gib", PeakMemoryGiB(x.model.device)}};
}

// The weights upcast to float32: the plain float32 path on the same (bf16-rounded)
// weights (a model of its own; the loaded one stays as it is).
std::unique_ptr<LlamaModel> Float32Copy(const LlamaModel& m) {
  auto out = std::make_unique<LlamaModel>(m);
  auto up = [](at::Tensor& t) { t = t.to(at::kFloat); };
  LlamaWeights& w = out->weights;
  up(w.embed_tokens);
  up(w.norm);
  w.lm_head = m.config.tie_word_embeddings ? w.embed_tokens : w.lm_head.to(at::kFloat);
  for (LlamaLayerWeights& l : w.layers) {
    for (at::Tensor* t : {&l.input_layernorm, &l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj,
                          &l.post_attention_layernorm, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      up(*t);
    }
  }
  out->dtype = at::kFloat;
  return out;
}

// Training: the product's step (this model's dtype, shared prefix) against the plain
// path in float32 over the whole prompt, same batch, same projector.
absl::StatusOr<json> CheckTrain(const Ctx& x) {
  const int64_t batch = x.settings.check_batch;
  TrainConfig fast = BenchTrainConfig(x, batch, 1);
  fast.reuse_prefix_kv = true;
  TrainConfig plain = fast;
  plain.reuse_prefix_kv = false;
  std::unique_ptr<LlamaModel> f32 = Float32Copy(x.model);
  LM_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> a,
                      Trainer::Create(x.model, x.forward, x.prompts, x.train, fast, nullptr));
  LM_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> b,
                      Trainer::Create(*f32, x.forward, x.prompts, x.train, plain, nullptr));
  StepStats sa = a->ComputeGradients(0);
  StepStats sb = b->ComputeGradients(0);
  auto ga = a->projector()->NamedParameters();
  auto gb = b->projector()->NamedParameters();
  std::vector<at::Tensor> fa, fb;
  for (size_t i = 0; i < ga.size(); ++i) {
    fa.push_back(ga[i].second.grad().reshape({-1}));
    fb.push_back(gb[i].second.grad().reshape({-1}));
  }
  const double loss_err = std::abs(sa.loss() - sb.loss()) / std::abs(sb.loss());
  const double grad_err = RelError(at::cat(fa), at::cat(fb));
  return json{{"check", "train"},
              {"batch", batch},
              {"loss_scale", sa.loss_scale},
              {"fast_loss", sa.loss()},
              {"plain_f32_loss", sb.loss()},
              {"loss_rel_err", loss_err},
              {"grad_rel_err", grad_err},
              {"pass", loss_err <= 2e-2 && grad_err <= 2e-2}};
}

// Eval: answers of the test digits with the shared prefix and without, same dtype.
absl::StatusOr<json> CheckEval(const Ctx& x, Projector& projector, int64_t batch) {
  EvalInputs in{&x.model, &projector, &x.prompts, &x.tokenizer, &x.test, x.forward};
  EvalConfig config;
  config.batch_size = batch;
  config.max_new_tokens = x.settings.max_new_tokens;
  std::vector<std::string> q = {x.prompts.config().questions[0]};
  EvalReport fast(q), plain(q);
  config.reuse_prefix_kv = true;
  LM_RETURN_IF_ERROR(EvaluateRange(in, 0, x.test.size(), config, &fast));
  config.reuse_prefix_kv = false;
  LM_RETURN_IF_ERROR(EvaluateRange(in, 0, x.test.size(), config, &plain));
  int64_t same = 0;
  for (int64_t i = 0; i < fast.NumSamples(); ++i) {
    same += fast.samples()[i].answer == plain.samples()[i].answer;
  }
  const double frac = static_cast<double>(same) / std::max<int64_t>(fast.NumSamples(), 1);
  return json{{"check", "eval"},
              {"images", fast.NumSamples()},
              {"same_answers", same},
              {"fraction", frac},
              {"pass", frac >= 0.99},
              {"example_fast", fast.samples()[0].answer},
              {"example_plain", plain.samples()[0].answer}};
}

// The projector's gradients of one step of `m`, flattened, and the step's loss.
struct GradientOf {
  at::Tensor grad;
  double loss = 0;
};

absl::StatusOr<GradientOf> StepGradient(const Ctx& x, const LlamaModel& m, const TrainConfig& c) {
  LM_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> t,
                      Trainer::Create(m, x.forward, x.prompts, x.train, c, nullptr));
  StepStats stats = t->ComputeGradients(0);
  std::vector<at::Tensor> flat;
  for (auto& p : t->projector()->NamedParameters()) flat.push_back(p.second.grad().reshape({-1}));
  return GradientOf{at::cat(flat).to(at::kFloat), stats.loss()};
}

// An FP8 model against the same weights loaded dense (bf16) and their float32 copy: the
// logits of the bench prompt (every position), the projector's gradient and loss of one
// training batch, and how many eval answers FP8 and bf16 share. It passes when FP8's
// errors from float32 are at most 32 times bf16's: e4m3 keeps 3 significand bits to
// bf16's 7, so about 2^4 times the rounding is expected, and a bug shows as far more
// (bench/RESULTS.md, "FP8", has the figures).
absl::StatusOr<json> CheckFp8(const Ctx& x, Projector& projector) {
  LM_ASSIGN_OR_RETURN(std::unique_ptr<const LlamaModel> dense,
                      LoadLlama(x.settings.model_spec, x.settings.dense_model));
  std::unique_ptr<LlamaModel> f32 = Float32Copy(*dense);
  json out{{"check", "fp8"}};
  {
    at::NoGradGuard no_grad;
    at::Tensor ids = x.prompts.Build({{0, 0, 7}, {0, 0, 2}}).ids.to(x.model.device);
    at::Tensor l8 = ForwardLogits(x.model, x.forward, ids).to(at::kFloat);
    at::Tensor l16 = ForwardLogits(*dense, x.forward, ids).to(at::kFloat);
    at::Tensor l32 = ForwardLogits(*f32, x.forward, ids);
    out["logits_fp8_vs_f32"] = RelError(l8, l32);
    out["logits_bf16_vs_f32"] = RelError(l16, l32);
    out["logits_fp8_vs_bf16"] = RelError(l8, l16);
    out["argmax_fp8_eq_bf16"] =
        l8.argmax(-1).eq(l16.argmax(-1)).to(at::kFloat).mean().item<double>();
  }
  TrainConfig c = BenchTrainConfig(x, x.settings.check_batch, 1);
  c.reuse_prefix_kv = true;
  LM_ASSIGN_OR_RETURN(GradientOf g8, StepGradient(x, x.model, c));
  LM_ASSIGN_OR_RETURN(GradientOf g16, StepGradient(x, *dense, c));
  c.reuse_prefix_kv = false;
  LM_ASSIGN_OR_RETURN(GradientOf g32, StepGradient(x, *f32, c));
  out["grad_fp8_vs_f32"] = RelError(g8.grad, g32.grad);
  out["grad_bf16_vs_f32"] = RelError(g16.grad, g32.grad);
  out["loss_fp8_vs_f32"] = std::abs(g8.loss - g32.loss) / std::abs(g32.loss);
  out["loss_bf16_vs_f32"] = std::abs(g16.loss - g32.loss) / std::abs(g32.loss);
  EvalConfig config;
  config.batch_size = x.settings.eval_batches.back();
  config.max_new_tokens = x.settings.max_new_tokens;
  std::vector<std::string> q = {x.prompts.config().questions[0]};
  EvalReport r8(q), r16(q);
  EvalInputs in8{&x.model, &projector, &x.prompts, &x.tokenizer, &x.test, x.forward};
  EvalInputs in16{dense.get(), &projector, &x.prompts, &x.tokenizer, &x.test, x.forward};
  const int64_t images = std::min<int64_t>(x.test.size(), 1000);
  LM_RETURN_IF_ERROR(EvaluateRange(in8, 0, images, config, &r8));
  LM_RETURN_IF_ERROR(EvaluateRange(in16, 0, images, config, &r16));
  int64_t same = 0;
  for (int64_t i = 0; i < r8.NumSamples(); ++i) {
    same += r8.samples()[i].answer == r16.samples()[i].answer;
  }
  out["eval_images"] = r8.NumSamples();
  out["eval_same_answers_fp8_bf16"] = same;
  out["pass"] =
      out["logits_fp8_vs_f32"].get<double>() <= 32 * out["logits_bf16_vs_f32"].get<double>() &&
      out["grad_fp8_vs_f32"].get<double>() <= 32 * out["grad_bf16_vs_f32"].get<double>();
  return out;
}

void PrintRow(const json& r) {
  if (r["mode"] == "train") {
    std::cout << absl::StrFormat("%-6s %6d %-9s %10.1f %10.1f %9.1f %6.1f%% %8.1f\n", "train",
                                 r["batch"].get<int64_t>(), r["prefix_kv"] ? "prefix" : "full",
                                 1e3 * r["median_s"].get<double>(), 1e3 * r["p90_s"].get<double>(),
                                 r["per_s"].get<double>(), 100 * r["mfu"].get<double>(),
                                 r["peak_gib"].get<double>());
  } else {
    const std::string what =
        absl::StrCat(r["prefix_kv"] ? "prefix" : "full", " ", r["new_tokens"].get<int64_t>(), "t");
    std::cout << absl::StrFormat("%-6s %6d %-9s %10.1f %10.1f %9.1f %7s %8.1f\n", "eval",
                                 r["batch"].get<int64_t>(), what, 1e3 * r["median_s"].get<double>(),
                                 1e3 * r["p90_s"].get<double>(), r["per_s"].get<double>(), "",
                                 r["peak_gib"].get<double>());
  }
}

void PrintTableHeader() {
  std::cout << absl::StrFormat("%-6s %6s %-9s %10s %10s %9s %7s %8s\n", "mode", "batch", "path",
                               "median ms", "p90 ms", "per s", "MFU", "peak GiB");
}

// The table's rows as they are run: each printed, and kept for the JSON. A row that fails
// in libtorch (out of memory at a large batch, say) is reported and the others still run.
class RowTable {
 public:
  // `what` names the row in its failure report.
  void Run(const std::function<absl::StatusOr<json>()>& row, const json& what) {
    absl::StatusOr<json> r;
    try {
      r = row();
    } catch (const c10::Error& e) {
      r = absl::InternalError(e.what_without_backtrace());
    }
    if (r.ok()) {
      PrintRow(*r);
      rows_.push_back(*r);
    } else {
      json failed = what;
      failed["error"] = std::string(r.status().message());
      std::cout << "row failed: " << failed.dump() << "\n";
      rows_.push_back(failed);
    }
  }
  const json& rows() const { return rows_; }

 private:
  json rows_ = json::array();
};

void RunTrainRows(const Ctx& x, RowTable& table) {
  for (int64_t b : x.settings.train_batches) {
    table.Run([&] { return BenchTrain(x, b); }, {{"mode", "train"}, {"batch", b}});
  }
}

// The eval rows' (and the eval --check's) projector on the model's device: random from
// --seed, or --bench_projector's.
absl::StatusOr<Projector> ProjectorForEval(const Ctx& x) {
  ProjectorConfig pc;
  pc.output_dim = x.model.config.hidden_size;
  pc.image_tokens = x.settings.prompt.image_tokens;
  Projector projector(pc, x.settings.seed);
  if (const std::string& path = x.settings.projector_path; !path.empty()) {
    LM_ASSIGN_OR_RETURN(TrainCheckpoint ckpt, LoadTrainCheckpoint(path));
    if (ckpt.projector_config.image_tokens != pc.image_tokens) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": its projector makes ", ckpt.projector_config.image_tokens,
                       " image tokens, the prompt has ", pc.image_tokens));
    }
    LM_ASSIGN_OR_RETURN(projector, RestoreProjectorForModel(ckpt, pc.output_dim, x.model.device));
  }
  projector->to(x.model.device);
  return projector;
}

void RunEvalRows(const Ctx& x, Projector& projector, RowTable& table) {
  const int64_t budget = x.settings.max_new_tokens;
  const int64_t answer = x.settings.answer_tokens;
  for (int64_t b : x.settings.eval_batches) {
    // No early stop: every row runs the whole budget (the forced figure).
    table.Run([&] { return BenchEval(x, projector, b, budget, false); },
              {{"mode", "eval"}, {"batch", b}, {"new_tokens", budget}});
    if (answer > 0) {
      // What early stop at the answer's end runs when every row has answered (a random
      // LM never emits <|eot_id|>, so the budget stands in for it).
      table.Run([&] { return BenchEval(x, projector, b, answer, false); },
                {{"mode", "eval"}, {"batch", b}, {"new_tokens", answer}});
    }
  }
}

// The --check comparisons of the modes run, each printed; their results, pass or not.
absl::StatusOr<json> RunChecks(const Ctx& x, Projector& projector) {
  json checks = json::array();
  if (!x.settings.check) return checks;
  if (x.model.format == WeightFormat::kFp8) {
    // The prefix/full comparisons below hold for FP8 as for bf16; what FP8 is asked is
    // how far it is from the dense weights.
    LM_ASSIGN_OR_RETURN(json c, CheckFp8(x, projector));
    std::cout << "check fp8: " << c.dump() << "\n";
    checks.push_back(c);
    return checks;
  }
  if (x.settings.RunsTrain()) {
    LM_ASSIGN_OR_RETURN(json c, CheckTrain(x));
    std::cout << "check train: " << c.dump() << "\n";
    checks.push_back(c);
  }
  if (x.settings.RunsEval()) {
    LM_ASSIGN_OR_RETURN(json c, CheckEval(x, projector, x.settings.eval_batches.back()));
    std::cout << "check eval: " << c.dump() << "\n";
    checks.push_back(c);
  }
  return checks;
}

json ResultsJson(const Ctx& x, double load_s, const json& rows, const json& checks) {
  return json{
      {"what", "llava-mnist bench"},
      {"model", x.model.source},
      {"device", x.model.device.str()},
      {"dtype", std::string(c10::toString(x.model.dtype))},
      {"weights", WeightFormatName(x.model.format)},
      {"weight_gib", static_cast<double>(WeightBytes(x.model)) / (1ull << 30)},
      {"fp8_backward", static_cast<int>(x.forward.fp8_backward)},
      {"fp8_fast_accum", x.forward.fp8_fast_accum},
      {"torch", TORCH_VERSION},
      {"residual", x.settings.residual},
      {"fold_gqa", x.forward.fold_gqa},
      {"lean_elementwise", x.forward.lean_elementwise},
      {"fused_swiglu", x.forward.fused_swiglu},
      {"fused_rope", x.forward.fused_rope},
      {"fused_decode_attention", x.forward.fused_decode_attention},
      {"fused_residual_norm", x.forward.fused_residual_norm},
      {"fp8_fuse", x.model.format == WeightFormat::kFp8 && !x.model.weights.layers.empty() &&
                       x.model.weights.layers[0].fp8.qkv.defined()},
      {"float32_attention", x.forward.float32_attention},
      {"model_load_s", load_s},
      {"prompt_tokens", x.prompts.Build({{0, 0, 7}}).ids.size(1)},
      {"image_position", x.prompts.BuildGeneration(0).image_position},
      {"rows", rows},
      {"checks", checks}};
}

}  // namespace

absl::Status RunBench(const std::vector<char*>& args) {
  LM_ASSIGN_OR_RETURN(const BenchSettings settings, BenchSettingsFromFlags());
  LM_ASSIGN_OR_RETURN(const BenchInputs in, LoadInputs(settings));
  const Ctx x{settings, *in.rt.model, in.forward, *in.rt.tokenizer, in.prompts, in.train, in.test};
  LM_LOG(INFO) << "bench: " << x.model.source << " on " << x.model.device << " as " << x.model.dtype
               << " (" << WeightFormatName(x.model.format) << " weights), made/loaded in "
               << in.load_s << " s; prompt of " << x.prompts.Build({{0, 0, 7}}).ids.size(1)
               << " tokens, image at " << x.prompts.BuildGeneration(0).image_position;

  PrintTableHeader();
  RowTable table;
  if (settings.RunsTrain()) RunTrainRows(x, table);
  LM_ASSIGN_OR_RETURN(Projector projector, ProjectorForEval(x));
  if (settings.RunsEval()) RunEvalRows(x, projector, table);
  LM_ASSIGN_OR_RETURN(const json checks, RunChecks(x, projector));

  const json out = ResultsJson(x, in.load_s, table.rows(), checks);
  std::cout << "model made/loaded in " << absl::StrFormat("%.2f", in.load_s) << " s\n";
  if (!settings.json_out.empty()) {
    LM_RETURN_IF_ERROR(WriteFileAtomic(settings.json_out, out.dump(1) + "\n"));
  }
  for (const json& c : checks) {
    if (!c["pass"].get<bool>()) {
      return absl::InternalError("bench: a fast-path check failed: " + c.dump());
    }
  }
  return absl::OkStatus();
}

}  // namespace llava
