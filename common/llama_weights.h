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
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/llama_config.h"

namespace llava {

// The RMSNorm weights are held in NormDtype(dtype), the matrices in the model dtype.
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
};

struct LlamaWeights {
  at::Tensor embed_tokens;  // model.embed_tokens.weight [V, D]
  std::vector<LlamaLayerWeights> layers;
  at::Tensor norm;     // model.norm.weight [D]
  at::Tensor lm_head;  // lm_head.weight [V, D]; the same tensor as embed_tokens when tied
};

struct LlamaModel {
  LlamaConfig config;
  LlamaWeights weights;
  at::Tensor inv_freq;  // [hd/2] float32, rope frequencies with scaling applied
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  std::string source;  // checkpoint directory or synthetic:NAME
};

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
};

// `spec` is a Hugging Face checkpoint directory (config.json + safetensors, single or
// sharded) or `synthetic:llama-3.1-8b` / `synthetic:tiny`. Every weight is frozen
// (requires_grad false, no gradient buffers).
absl::StatusOr<std::unique_ptr<const LlamaModel>> LoadLlama(const std::string& spec,
                                                            const ModelOptions& options);

// The configs behind synthetic:NAME (llama-3.1-8b is the published
// Llama-3.1-8B-Instruct config.json, embedded).
absl::StatusOr<LlamaConfig> SyntheticConfig(const std::string& name);

// A model of `config` with random weights (normal, std 0.02; norms one) made directly
// on the target device and dtype. Not const: `make-demo-lm` trains its weights.
std::unique_ptr<LlamaModel> MakeRandomLlama(const LlamaConfig& config, const ModelOptions& options);

// Parses "cpu", "cuda", "cuda:1", "auto" (cuda:0 if available) into a device.
absl::StatusOr<at::Device> ParseDevice(const std::string& text);
// Parses "float32"/"fp32", "bfloat16"/"bf16", "float16"/"fp16".
absl::StatusOr<at::ScalarType> ParseDtype(const std::string& text);

}  // namespace llava
