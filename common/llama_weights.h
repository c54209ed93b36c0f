// The frozen Llama's weights, one field per Hugging Face checkpoint key, and how a model
// is made: loaded from a checkpoint directory or made with random weights
// (`synthetic:NAME`). A LlamaModel is immutable once made (LoadLlama hands it out const);
// every forward function takes it by const reference, with the ForwardOptions of how to
// compute (common/forward_options.h) beside it, and may be called from several threads
// at once.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/fp8_linear.h"
#include "common/llama_config.h"

namespace llava {

// A layer's matrices in FP8 (--weights fp8); a matrix of a shape FP8 cannot run
// (Fp8Shape) stays in the dense field instead. Where all of q/k/v (gate/up) are FP8 and
// ModelOptions::fp8_fuse says so, they are held as one matrix, rows in that order, and
// their own fields are empty.
struct Fp8LayerWeights {
  Fp8Matrix q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
  Fp8Matrix qkv;      // [H*hd + 2*Hkv*hd, D]
  Fp8Matrix gate_up;  // [2F, D]

  // Bytes of every matrix held.
  int64_t bytes() const;
};

// The RMSNorm weights are held in NormDtype(dtype), the matrices in the model dtype (or
// in `fp8`, the dense field then undefined).
struct LlamaLayerWeights {
  at::Tensor input_layernorm;           // model.layers.N.input_layernorm.weight [D]
  at::Tensor q_proj;                    // model.layers.N.self_attn.q_proj.weight [H*hd, D]
  at::Tensor k_proj;                    // model.layers.N.self_attn.k_proj.weight [Hkv*hd, D]
  at::Tensor v_proj;                    // model.layers.N.self_attn.v_proj.weight [Hkv*hd, D]
  at::Tensor o_proj;                    // model.layers.N.self_attn.o_proj.weight [D, H*hd]
  at::Tensor post_attention_layernorm;  // model.layers.N.post_attention_layernorm.weight [D]
  at::Tensor gate_proj;                 // model.layers.N.mlp.gate_proj.weight [F, D]
  at::Tensor up_proj;                   // model.layers.N.mlp.up_proj.weight [F, D]
  at::Tensor down_proj;                 // model.layers.N.mlp.down_proj.weight [D, F]
  Fp8LayerWeights fp8;
};

struct LlamaWeights {
  at::Tensor embed_tokens;  // model.embed_tokens.weight [V, D]
  std::vector<LlamaLayerWeights> layers;
  at::Tensor norm;     // model.norm.weight [D]
  at::Tensor lm_head;  // lm_head.weight [V, D]; the same tensor as embed_tokens when tied
};

// How the frozen matrices are held: in the model dtype, or the decoder layers' matrices
// in FP8 (embeddings, norms and lm_head stay in the model dtype: see LoadLlama).
enum class WeightFormat { kDense, kFp8 };

struct LlamaModel {
  LlamaConfig config;
  LlamaWeights weights;
  at::Tensor inv_freq;  // [hd/2] float32, rope frequencies with scaling applied
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  WeightFormat format = WeightFormat::kDense;
  std::string source;  // checkpoint directory or synthetic:NAME
};

// Bytes of the model's weights on its device (every copy counted once).
int64_t WeightBytes(const LlamaModel& model);

// The dtype of the [D] RMSNorm weights of a model computing in `model_dtype`: at least
// float32. They are 0.01% of Llama's weights, and rounding them to bf16 rescales every
// channel of every normed activation by up to 2^-8, the same error at every position:
// on the tied fixture that alone is 1.29e-2 of the logits' relative error, most of what
// bf16 weights cost there (1.62e-2). llama.cpp's GGUF files keep 1-D tensors in F32 for
// the same reason. A published bf16 checkpoint's norms convert exactly, so it computes
// what it did; a float32 checkpoint (a user's own fine-tune, the fixtures) keeps them.
at::ScalarType NormDtype(at::ScalarType model_dtype);

struct ModelOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;  // compute and storage dtype of the frozen weights
  uint64_t synthetic_seed = 0;        // for synthetic:NAME weights
  // kFp8: each decoder matrix quantized as it is loaded (or made), so that no two full
  // copies of the model are ever held; bfloat16 compute only, on a GPU FP8 runs on.
  WeightFormat weights = WeightFormat::kDense;
  // FP8: keep each matrix's transposed copy for the backward GEMM (twice the FP8 bytes)
  // or transpose it at each backward call. Unset: kept where all of them take at most
  // half of the device's memory (an 8B model on an 80 GB GPU; not a 70B one).
  std::optional<bool> fp8_transposed_copy;
  // FP8: q/k/v and gate/up each as one matrix (Fp8LayerWeights), so that each input
  // runs one GEMM forward and one backward instead of three or two, and the backward
  // adds no gradients up.
  bool fp8_fuse = true;
};

// `spec` is a Hugging Face checkpoint directory (config.json + safetensors, single or
// sharded) or `synthetic:llama-3.1-8b` / `synthetic:llama-3.1-70b` / `synthetic:tiny`.
// Every weight is frozen (requires_grad false, no gradient buffers). Errors besides the
// checkpoint's own: --weights fp8 where FP8 cannot run (Fp8Supported) or with another
// dtype than bfloat16 (FailedPrecondition, InvalidArgument).
absl::StatusOr<std::unique_ptr<const LlamaModel>> LoadLlama(const std::string& spec,
                                                            const ModelOptions& options);

// What LoadLlama checks of `options` before it reads anything (the errors above besides
// the checkpoint's own), for callers that start processes which will load the model
// (`launch`): the user hears it at once, not from a worker's log.
absl::Status ValidateModelOptions(const std::string& spec, const ModelOptions& options);

// The configs behind synthetic:NAME (llama-3.1-8b and llama-3.1-70b are the published
// Llama-3.1-8B/70B-Instruct config.json files, embedded).
absl::StatusOr<LlamaConfig> SyntheticConfig(const std::string& name);

// A model of `config` with random weights (normal, std 0.02; norms one) made directly
// on the target device and dtype, layer by layer (FP8: each layer quantized before the
// next is made). Not const: `make-demo-lm` trains its weights.
absl::StatusOr<std::unique_ptr<LlamaModel>> MakeRandomLlama(const LlamaConfig& config,
                                                            const ModelOptions& options);

// Parses "cpu", "cuda", "cuda:1", "auto" (cuda:0 if available) into a device.
absl::StatusOr<at::Device> ParseDevice(const std::string& text);
// Parses "float32"/"fp32", "bfloat16"/"bf16", "float16"/"fp16".
absl::StatusOr<at::ScalarType> ParseDtype(const std::string& text);
// Parses "dense" and "fp8" (--weights).
absl::StatusOr<WeightFormat> ParseWeightFormat(const std::string& text);
const char* WeightFormatName(WeightFormat format);

}  // namespace llava
