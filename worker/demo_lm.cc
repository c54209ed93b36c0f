#include "worker/demo_lm.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <torch/optim/adamw.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <climits>
#include <cmath>
#include <deque>
#include <filesystem>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/elapsed.h"
#include "common/file_util.h"
#include "common/forward_options.h"
#include "common/llama_forward.h"
#include "common/llama_weights.h"
#include "common/log.h"
#include "common/prompt.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "common/tokenizer.h"

namespace llava {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int64_t kVocabSize = 128256;  // Llama 3.1's embedding rows
constexpr int64_t kBosId = 128000;
constexpr int64_t kNumDigits = 10;
constexpr char kAnswerTemplate[] = "The digit is {label}.";
const std::vector<int64_t> kEosIds = {128001, 128008, 128009};
// The demo LM trains and is checked under the product's default options, which its
// builds (bitwise reproducible) have always used.
constexpr ForwardOptions kForward{};

LlamaConfig DemoConfig(const DemoLmOptions& o) {
  LlamaConfig c;
  c.vocab_size = kVocabSize;
  c.hidden_size = o.hidden_size;
  c.intermediate_size = o.intermediate_size;
  c.num_hidden_layers = o.num_layers;
  c.num_attention_heads = o.num_heads;
  c.num_key_value_heads = o.num_kv_heads;
  c.head_dim = o.hidden_size / o.num_heads;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-5;
  // Llama 3.1's rope exactly, so the demo LM exercises the same position code.
  c.rope.type = RopeType::kLlama3;
  c.rope.theta = 500000.0;
  c.rope.factor = 8.0;
  c.rope.low_freq_factor = 1.0;
  c.rope.high_freq_factor = 4.0;
  c.rope.original_max_position_embeddings = 8192;
  c.tie_word_embeddings = true;
  c.bos_token_id = kBosId;
  c.eos_token_ids = kEosIds;
  c.torch_dtype = "float32";
  return c;
}

// The weights under their Hugging Face checkpoint keys; the tied lm_head is the
// embedding itself and has no key of its own.
std::vector<NamedTensor> NamedWeights(const LlamaModel& m) {
  const LlamaWeights& w = m.weights;
  std::vector<NamedTensor> out = {{"model.embed_tokens.weight", w.embed_tokens}};
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LlamaLayerWeights& l = w.layers[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    out.push_back({p + "input_layernorm.weight", l.input_layernorm});
    out.push_back({p + "self_attn.q_proj.weight", l.q_proj});
    out.push_back({p + "self_attn.k_proj.weight", l.k_proj});
    out.push_back({p + "self_attn.v_proj.weight", l.v_proj});
    out.push_back({p + "self_attn.o_proj.weight", l.o_proj});
    out.push_back({p + "post_attention_layernorm.weight", l.post_attention_layernorm});
    out.push_back({p + "mlp.gate_proj.weight", l.gate_proj});
    out.push_back({p + "mlp.up_proj.weight", l.up_proj});
    out.push_back({p + "mlp.down_proj.weight", l.down_proj});
  }
  out.push_back({"model.norm.weight", w.norm});
  return out;
}

// The token of each digit "0".."9", which stands in for the image during training.
absl::StatusOr<std::vector<int64_t>> DigitTokenIds(const Tokenizer& tok,
                                                   const std::string& source) {
  std::vector<int64_t> ids;
  for (int64_t d = 0; d < kNumDigits; ++d) {
    LM_ASSIGN_OR_RETURN(std::vector<int64_t> enc, tok.Encode(std::to_string(d)));
    if (enc.size() != 1 || enc[0] >= kVocabSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": the digit '", d, "' is not one token of the Llama 3.1 vocabulary (got ",
          enc.size(), " tokens)"));
    }
    ids.push_back(enc[0]);
  }
  return ids;
}

struct TrainContext {
  const DemoLmOptions& options;
  const PromptBuilder& prompts;
  const std::vector<int64_t>& digit_ids;
};

// One batch of dialogues: a random digit and phrasing per row, the digit's token in the
// image slot.
struct TextBatch {
  PromptBatch prompt;
  std::vector<int64_t> labels;  // per row, the digit
};

TextBatch SampleBatch(const TrainContext& ctx, std::mt19937_64* rng) {
  const int64_t num_questions = static_cast<int64_t>(ctx.prompts.config().questions.size());
  std::vector<PromptSample> samples(ctx.options.batch_size);
  TextBatch out;
  for (PromptSample& s : samples) {
    // Modulo rather than std::uniform_int_distribution, whose output differs between
    // standard libraries: the data stream is part of the recipe.
    s.label = static_cast<int64_t>((*rng)() % kNumDigits);
    s.question = static_cast<int64_t>((*rng)() % num_questions);
    out.labels.push_back(s.label);
  }
  out.prompt = ctx.prompts.Build(samples);
  at::Tensor slot = out.prompt.ids.select(1, out.prompt.image_position);  // [B]
  for (int64_t r = 0; r < ctx.options.batch_size; ++r) {
    slot[r].fill_(ctx.digit_ids[out.labels[r]]);
  }
  return out;
}

// inputs_embeds [B, T, D] with Gaussian noise on the image slot, its scale per row drawn
// uniformly from [0, image_noise] times the slot embedding's RMS, so the LM sees both
// exact and perturbed digit embeddings.
at::Tensor NoisyEmbeds(const LlamaModel& m, const PromptBatch& batch, double image_noise,
                       at::Generator& gen) {
  at::Tensor embeds = EmbedTokens(m, batch.ids);  // [B, T, D]
  if (image_noise <= 0) return embeds;
  const int64_t b = embeds.size(0), d = embeds.size(2);
  at::Tensor slot = embeds.select(1, batch.image_position).detach();          // [B, D]
  at::Tensor rms = slot.pow(2).mean(-1, /*keepdim=*/true).sqrt();             // [B, 1]
  at::Tensor scale = at::empty({b, 1}).uniform_(0.0, image_noise, gen);       // [B, 1]
  at::Tensor noise = at::empty({b, d}).normal_(0.0, 1.0, gen) * scale * rms;  // [B, D]
  at::Tensor full = at::zeros_like(slot).unsqueeze(1).repeat({1, embeds.size(1), 1});
  full.select(1, batch.image_position).copy_(noise);  // [B, T, D], zero off the slot
  return embeds + full;
}

struct StepLoss {
  at::Tensor loss;        // mean over the rows taken, float32 scalar
  double digit_loss = 0;  // mean over the digit tokens only (what the image must decide)
};

// hidden [N, D] -> logits [N, V]. On the CPU as a 1x1 convolution: libtorch's matmul
// goes to whatever BLAS the system links (Debian's is the reference netlib one, several
// times slower), while convolutions go to oneDNN. Same values to rounding.
at::Tensor HeadLogits(const LlamaModel& m, const at::Tensor& hidden) {
  if (!m.device.is_cpu() || m.dtype != at::kFloat) return LmHeadLogits(m, hidden);
  // libtorch takes its oneDNN path for a 1x1 convolution only from 16 rows on (when
  // single-threaded); zero rows below that cost nothing and add no gradient.
  constexpr int64_t kMinRows = 16;
  const int64_t n = hidden.size(0), d = hidden.size(1);
  at::Tensor x = n >= kMinRows ? hidden : at::cat({hidden, hidden.new_zeros({kMinRows - n, d})});
  const at::Tensor& w = m.weights.lm_head;  // [V, D]
  return at::conv2d(x.reshape({x.size(0), d, 1, 1}), w.view({w.size(0), d, 1, 1}))
      .view({x.size(0), w.size(0)})
      .narrow(0, 0, n);  // [N, V]
}

// The answer loss, with lm_head computed only at the positions that predict an answer
// token: over 128,256 tokens it dominates the cost, and the other positions carry no
// loss, so with template_rows = B this equals CausalLmLoss on the full logits. Rows
// r >= template_rows contribute only their digit token: the template is the same in
// every row and is learned from a few, the digit needs them all.
StepLoss AnswerLoss(const LlamaModel& m, const TextBatch& batch, const at::Tensor& embeds,
                    const std::vector<int64_t>& digit_ids, int64_t template_rows) {
  const at::Tensor& labels = batch.prompt.labels;  // [B, T]
  const int64_t b = labels.size(0), t = labels.size(1);
  at::Tensor hidden = DecoderForward(m, kForward, embeds);  // [B, T, D]
  // Position t predicts label t+1.
  at::Tensor shifted = at::constant_pad_nd(labels, {0, 1}, -100).narrow(1, 1, t);  // [B, T]
  at::Tensor is_digit = at::isin(shifted, at::tensor(digit_ids, at::kLong));       // [B, T]
  at::Tensor row_takes_all = (at::arange(b, at::kLong) < template_rows).unsqueeze(1);
  at::Tensor take = shifted.ne(-100).logical_and(is_digit.logical_or(row_takes_all));
  at::Tensor where = take.reshape({-1}).nonzero().squeeze(1);            // [N]
  at::Tensor rows = hidden.reshape({b * t, -1}).index_select(0, where);  // [N, D]
  at::Tensor targets = shifted.reshape({-1}).index_select(0, where);     // [N]
  at::Tensor logits = HeadLogits(m, rows).to(at::kFloat);                // [N, V]
  at::Tensor per_token =
      at::cross_entropy_loss(logits, targets, /*weight=*/{}, at::Reduction::None, -100);  // [N]
  StepLoss out;
  out.loss = per_token.mean();
  at::Tensor digit_rows = is_digit.reshape({-1}).index_select(0, where);
  out.digit_loss = per_token.detach().masked_select(digit_rows).mean().item<double>();
  return out;
}

// The plain answer loss (every answer token, no noise) on a fixed set of dialogues.
double EvalAnswerLoss(const TrainContext& ctx, const LlamaModel& m) {
  at::NoGradGuard no_grad;
  constexpr int64_t kEvalDialogues = 64;
  DemoLmOptions eval_options = ctx.options;
  eval_options.batch_size = kEvalDialogues;
  const TrainContext eval_ctx{eval_options, ctx.prompts, ctx.digit_ids};
  std::mt19937_64 rng(ctx.options.seed ^ 0x5eedeba1ULL);
  TextBatch batch = SampleBatch(eval_ctx, &rng);
  return AnswerLoss(m, batch, EmbedTokens(m, batch.prompt.ids), ctx.digit_ids, kEvalDialogues)
      .loss.item<double>();
}

// Whether greedy decoding answers exactly "The digit is {label}." + <|eot_id|> for every
// (held-out question, digit) pair, the digit's token at the image slot. Checked in one
// teacher-forced pass: greedy decoding reproduces the answer exactly when the argmax at
// every answer position is the answer's next token (by induction over the positions),
// and one batched forward is far cheaper than token-by-token generation.
double HeldOutAccuracy(const LlamaModel& m, const PromptBuilder& held_out,
                       const std::vector<int64_t>& digit_ids) {
  at::NoGradGuard no_grad;
  std::vector<PromptSample> samples;
  for (size_t q = 0; q < held_out.config().questions.size(); ++q) {
    for (int64_t d = 0; d < kNumDigits; ++d) samples.push_back({static_cast<int64_t>(q), 0, d});
  }
  PromptBatch batch = held_out.Build(samples);
  at::Tensor slot = batch.ids.select(1, batch.image_position);  // [B]
  for (size_t r = 0; r < samples.size(); ++r) slot[r].fill_(digit_ids[samples[r].label]);
  const int64_t b = batch.ids.size(0), t = batch.ids.size(1);
  at::Tensor hidden = DecoderForward(m, kForward, EmbedTokens(m, batch.ids));  // [B, T, D]
  at::Tensor shifted = at::constant_pad_nd(batch.labels, {0, 1}, -100).narrow(1, 1, t);
  at::Tensor answer = shifted.ne(-100);                                  // [B, T]
  at::Tensor where = answer.reshape({-1}).nonzero().squeeze(1);          // [N]
  at::Tensor rows = hidden.reshape({b * t, -1}).index_select(0, where);  // [N, D]
  at::Tensor predicted = at::full({b * t}, -100, at::kLong);
  predicted.index_copy_(0, where, HeadLogits(m, rows).argmax(-1));  // [B*T]
  at::Tensor row_right = predicted.view({b, t}).eq(shifted).logical_or(answer.logical_not());
  return row_right.all(1).to(at::kDouble).mean().item<double>();
}

json OptionsJson(const DemoLmOptions& o) {
  return {{"hidden_size", o.hidden_size},
          {"num_layers", o.num_layers},
          {"num_heads", o.num_heads},
          {"num_kv_heads", o.num_kv_heads},
          {"intermediate_size", o.intermediate_size},
          {"steps", o.steps},
          {"batch_size", o.batch_size},
          {"lr", o.lr},
          {"optimizer", "AdamW(betas 0.9/0.999, wd 0.01)"},
          {"seed", o.seed},
          {"image_noise", o.image_noise},
          {"template_fraction", o.template_fraction},
          {"stop_loss", o.stop_loss},
          {"stop_window", o.stop_window},
          {"answer_template", kAnswerTemplate},
          {"prompt_style", "experiment"}};
}

json ConfigJson(const LlamaConfig& c) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"mlp_bias", false},
          {"hidden_act", "silu"},
          {"pretraining_tp", 1},
          {"initializer_range", 0.02},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads},
          {"num_key_value_heads", c.num_key_value_heads},
          {"head_dim", c.head_dim},
          {"max_position_embeddings", c.max_position_embeddings},
          {"rms_norm_eps", c.rms_norm_eps},
          // The published Llama 3.1 form, which transformers 4.x and 5 both read.
          {"rope_theta", c.rope.theta},
          {"rope_scaling",
           {{"rope_type", "llama3"},
            {"factor", c.rope.factor},
            {"low_freq_factor", c.rope.low_freq_factor},
            {"high_freq_factor", c.rope.high_freq_factor},
            {"original_max_position_embeddings", c.rope.original_max_position_embeddings}}},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"bos_token_id", c.bos_token_id},
          {"eos_token_id", c.eos_token_ids},
          {"torch_dtype", "float32"},
          {"use_cache", true}};
}

json GenerationConfigJson(const LlamaConfig& c) {
  return {
      {"bos_token_id", c.bos_token_id}, {"eos_token_id", c.eos_token_ids}, {"do_sample", false}};
}

struct TrainOutcome {
  double running_loss = 0;
  int64_t steps = 0;
  double seconds = 0;
  json curve = json::array();  // {step, loss, digit_loss, seconds} every log_every steps
};

absl::StatusOr<TrainOutcome> Train(const TrainContext& ctx, LlamaModel* model) {
  const DemoLmOptions& o = ctx.options;
  std::vector<at::Tensor> params;
  for (NamedTensor& nt : NamedWeights(*model)) params.push_back(nt.tensor.requires_grad_(true));
  torch::optim::AdamW optimizer(
      params, torch::optim::AdamWOptions(o.lr).betas({0.9, 0.999}).weight_decay(0.01));
  std::mt19937_64 rng(o.seed);
  at::Generator noise_gen = at::detail::createCPUGenerator(o.seed + 1);

  const int64_t template_rows =
      std::max<int64_t>(1, std::llround(o.template_fraction * static_cast<double>(o.batch_size)));
  TrainOutcome out;
  std::deque<double> window;
  double window_sum = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = 1; step <= o.steps; ++step) {
    TextBatch batch = SampleBatch(ctx, &rng);
    at::Tensor embeds = NoisyEmbeds(*model, batch.prompt, o.image_noise, noise_gen);
    StepLoss sl = AnswerLoss(*model, batch, embeds, ctx.digit_ids, template_rows);
    optimizer.zero_grad();
    sl.loss.backward();
    optimizer.step();
    const double loss = sl.loss.item<double>();
    if (!std::isfinite(loss)) {
      return absl::InternalError(absl::StrCat("demo LM: the answer loss became ", loss, " at step ",
                                              step, " (lr ", o.lr, " too high?)"));
    }
    window.push_back(loss);
    window_sum += loss;
    if (static_cast<int64_t>(window.size()) > o.stop_window) {
      window_sum -= window.front();
      window.pop_front();
    }
    out.steps = step;
    out.running_loss = window_sum / window.size();
    const bool stop = o.stop_loss > 0 && static_cast<int64_t>(window.size()) == o.stop_window &&
                      out.running_loss < o.stop_loss;
    if (step % o.log_every == 0 || step == 1 || step == o.steps || stop) {
      const double secs = SecondsSince(start);
      LM_LOG(INFO) << "demo LM step " << step << "/" << o.steps << ": answer loss " << loss
                   << " (running " << out.running_loss << "), digit loss " << sl.digit_loss << ", "
                   << secs << " s";
      out.curve.push_back({{"step", step},
                           {"loss", loss},
                           {"running_loss", out.running_loss},
                           {"digit_loss", sl.digit_loss},
                           {"seconds", secs}});
    }
    if (stop) break;
  }
  out.seconds = SecondsSince(start);
  for (at::Tensor& p : params) {
    p.mutable_grad().reset();
    p.requires_grad_(false);
  }
  return out;
}

absl::Status WriteJson(const std::string& path, const json& j) {
  return WriteFileAtomic(path, j.dump(2) + "\n");
}

struct ModelFiles {
  const LlamaModel& model;
  const std::string& tokenizer_text;
  json recipe;
};

absl::Status WriteModelDir(const std::string& dir, const ModelFiles& f) {
  std::vector<NamedTensor> tensors = NamedWeights(f.model);
  for (NamedTensor& nt : tensors) nt.tensor = nt.tensor.detach().to(at::kFloat).contiguous();
  LM_RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}}));
  LM_RETURN_IF_ERROR(WriteJson(dir + "/config.json", ConfigJson(f.model.config)));
  LM_RETURN_IF_ERROR(
      WriteJson(dir + "/generation_config.json", GenerationConfigJson(f.model.config)));
  LM_RETURN_IF_ERROR(WriteFileAtomic(dir + "/tokenizer.json", f.tokenizer_text));
  return WriteJson(dir + "/demo_lm.json", f.recipe);
}

// Puts the finished `tmp` directory in place of `dir` (whose old contents, if any, are
// moved aside first and then deleted).
absl::Status ReplaceDir(const std::string& tmp, const std::string& dir) {
  std::error_code ec;
  const std::string old = dir + ".old";
  LM_RETURN_IF_ERROR(RemoveTree(old));
  if (fs::exists(dir)) {
    fs::rename(dir, old, ec);
    if (ec)
      return absl::InternalError(absl::StrCat("renaming ", dir, " to ", old, ": ", ec.message()));
  }
  fs::rename(tmp, dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("renaming ", tmp, " to ", dir, ": ", ec.message()));
  return RemoveTree(old);
}

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

absl::StatusOr<DemoLmResult> BuildDemoLmImpl(const DemoLmOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  LM_RETURN_IF_ERROR(o.Validate());
  const std::string out_dir = StripTrailingSlashes(o.out_dir);
  const int threads = o.num_threads > 0
                          ? o.num_threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);

  LM_ASSIGN_OR_RETURN(std::string tokenizer_text, ReadFile(o.tokenizer_path));
  LM_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromJson(tokenizer_text, o.tokenizer_path));
  if (tok.vocab_size() > kVocabSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.tokenizer_path, ": vocabulary of ", tok.vocab_size(),
                     " tokens does not fit Llama 3.1's ", kVocabSize, " embedding rows"));
  }
  LM_ASSIGN_OR_RETURN(std::vector<int64_t> digit_ids, DigitTokenIds(tok, o.tokenizer_path));
  PromptConfig pc;
  pc.style = PromptStyle::kExperiment;
  pc.answer_templates = {kAnswerTemplate};
  pc.questions = DemoLmQuestions();
  LM_ASSIGN_OR_RETURN(PromptBuilder train_prompts, PromptBuilder::Create(tok, pc));
  pc.questions = HeldOutQuestions();
  LM_ASSIGN_OR_RETURN(PromptBuilder held_out_prompts, PromptBuilder::Create(tok, pc));

  ModelOptions mo;
  mo.synthetic_seed = o.seed;
  LM_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, MakeRandomLlama(DemoConfig(o), mo));
  model->source = out_dir;
  LM_LOG(INFO) << "building the demo LM (" << DescribeConfig(model->config) << ") on " << threads
               << " threads: " << o.steps << " steps of " << o.batch_size << " dialogues, lr "
               << o.lr << ", seed " << o.seed;
  const TrainContext ctx{o, train_prompts, digit_ids};
  const double initial_loss = o.evaluate ? EvalAnswerLoss(ctx, *model) : -1;
  LM_ASSIGN_OR_RETURN(TrainOutcome trained, Train(ctx, model.get()));

  DemoLmResult result;
  result.initial_answer_loss = initial_loss;
  result.final_answer_loss = o.evaluate ? EvalAnswerLoss(ctx, *model) : -1;
  result.running_train_loss = trained.running_loss;
  result.steps = trained.steps;
  if (o.evaluate) result.digit_accuracy = HeldOutAccuracy(*model, held_out_prompts, digit_ids);

  const std::string tmp = out_dir + ".tmp";
  LM_RETURN_IF_ERROR(RemoveTree(tmp));
  LM_RETURN_IF_ERROR(MakeDirs(tmp));
  json recipe = {{"what",
                  "llava-mnist demo LM: Llama 3.1 architecture and tokenizer, trained "
                  "on text-only dialogues (the digit's token at the image slot)"},
                 {"recipe", OptionsJson(o)},
                 {"seed", o.seed},
                 {"threads", threads},
                 {"torch_version", TORCH_VERSION},
                 {"train_questions", DemoLmQuestions().size()},
                 {"held_out_questions", HeldOutQuestions().size()},
                 {"steps_run", trained.steps},
                 {"initial_answer_loss", result.initial_answer_loss},
                 {"final_answer_loss", result.final_answer_loss},
                 {"running_train_loss", result.running_train_loss},
                 {"held_out_digit_accuracy", result.digit_accuracy},
                 {"train_seconds", trained.seconds},
                 {"loss_curve", trained.curve}};
  result.seconds = SecondsSince(start);
  recipe["build_seconds"] = result.seconds;
  LM_RETURN_IF_ERROR(WriteModelDir(tmp, {*model, tokenizer_text, recipe}));
  LM_RETURN_IF_ERROR(ReplaceDir(tmp, out_dir));
  result.seconds = SecondsSince(start);
  LM_LOG(INFO) << "demo LM written to " << out_dir << ": " << trained.steps
               << " steps, answer loss " << result.initial_answer_loss << " -> "
               << result.final_answer_loss << ", held-out accuracy " << result.digit_accuracy
               << ", " << result.seconds << " s";
  return result;
}

}  // namespace

absl::Status DemoLmOptions::Validate() const {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("demo LM options: ", what));
  };
  if (tokenizer_path.empty()) return bad("tokenizer_path is empty");
  if (StripTrailingSlashes(out_dir).empty() || StripTrailingSlashes(out_dir) == "/") {
    return bad("out_dir is empty");
  }
  const std::pair<const char*, int64_t> positives[] = {{"hidden_size", hidden_size},
                                                       {"num_layers", num_layers},
                                                       {"num_heads", num_heads},
                                                       {"num_kv_heads", num_kv_heads},
                                                       {"intermediate_size", intermediate_size},
                                                       {"steps", steps},
                                                       {"batch_size", batch_size},
                                                       {"log_every", log_every},
                                                       {"stop_window", stop_window}};
  for (const auto& [name, value] : positives) {
    if (value <= 0) return bad(absl::StrCat(name, " must be > 0, got ", value));
  }
  if (hidden_size % num_heads != 0 || (hidden_size / num_heads) % 2 != 0) {
    return bad(absl::StrCat("hidden_size (", hidden_size, ") must be num_heads (", num_heads,
                            ") times an even head_dim"));
  }
  if (num_heads % num_kv_heads != 0) {
    return bad(absl::StrCat("num_heads (", num_heads, ") must be a multiple of num_kv_heads (",
                            num_kv_heads, ")"));
  }
  if (!(lr > 0) || !std::isfinite(lr)) return bad(absl::StrCat("lr must be > 0, got ", lr));
  if (!(image_noise >= 0) || !std::isfinite(image_noise)) {
    return bad(absl::StrCat("image_noise must be >= 0, got ", image_noise));
  }
  if (!(template_fraction > 0 && template_fraction <= 1)) {
    return bad(absl::StrCat("template_fraction must be in (0, 1], got ", template_fraction));
  }
  if (!(stop_loss >= 0)) return bad(absl::StrCat("stop_loss must be >= 0, got ", stop_loss));
  if (num_threads < 0) return bad(absl::StrCat("num_threads must be >= 0, got ", num_threads));
  return absl::OkStatus();
}

const std::vector<std::string>& DemoLmQuestions() {
  static const std::vector<std::string> questions = {
      "What digit is this?",
      "What is this number?",
      "Which digit is shown?",
      "Name the digit.",
      "What number is shown here?",
      "Which number is this?",
      "What digit do you see?",
      "Tell me the digit.",
      "Identify the digit.",
      "What is the digit in the image?",
      "Which digit is in the picture?",
      "What number is written here?",
      "Read the digit.",
      "What digit is written?",
      "Can you tell me which digit this is?",
      "Which digit does this show?",
      "What is the number?",
      "Say the digit.",
      "What single digit is this?",
      "Recognize the digit.",
      "Which digit is it?",
      "What digit is it?",
      "What number do you see?",
      "Please name the digit shown.",
      "What's this digit?",
      "What number is this?",
      "Classify this digit.",
      "Which of 0-9 is this?",
      "What digit appears here?",
      "Give the digit.",
      "Digit?",
      "What is shown?",
      "Which handwritten digit is this?",
      "What handwritten number is shown?",
      "Look at the image: what digit is it?",
      "Identify the number in the image.",
      "What value does this digit have?",
      "Which numeral is this?",
      "Tell me what number this is.",
      "What digit does the image contain?",
  };
  return questions;
}

const std::vector<std::string>& HeldOutQuestions() {
  static const std::vector<std::string> questions = {
      "Which digit is depicted?",
      "What number is pictured?",
      "Can you read this digit?",
      "What is the digit shown in this image?",
      "Determine the digit.",
      "Which number appears in the image?",
      "What digit is displayed?",
      "State the digit you see.",
      "What is this handwritten digit?",
      "Which digit was drawn?",
      "Please identify this number.",
      "What numeral is shown?",
  };
  return questions;
}

absl::StatusOr<DemoLmResult> BuildDemoLm(const DemoLmOptions& options) {
  try {
    return BuildDemoLmImpl(options);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("building the demo LM in ", options.out_dir, ": ",
                                            e.what_without_backtrace()));
  }
}

bool DemoLmExists(const std::string& out_dir) {
  const std::string dir = StripTrailingSlashes(out_dir);
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors",
                        "tokenizer.json", "demo_lm.json"}) {
    if (!FileExists(dir + "/" + f)) return false;
  }
  return true;
}

}  // namespace llava
