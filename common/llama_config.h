// The frozen Llama's hyper-parameters, read from a Hugging Face config.json in both the
// published Llama 3.1 form (rope_theta/rope_scaling at the top level) and the
// transformers-5 form (rope_parameters). Plain data; Validate() refuses what the forward
// functions cannot compute.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

enum class RopeType { kDefault, kLlama3 };

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  // llama3 scaling (Llama 3.1): low-frequency bands are divided by `factor`, high ones
  // kept, the band between interpolated.
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;   // `eos_token_id` may be a number or a list
  std::string torch_dtype = "float32";  // as stored ("dtype" or "torch_dtype")

  absl::Status Validate() const;
  int64_t num_kv_groups() const { return num_attention_heads / num_key_value_heads; }
  // Parameters of the whole model (embeddings counted once when tied). Only for a config
  // that Validate() accepts (which refuses sizes whose count overflows int64).
  int64_t NumParameters() const;
  // Weights of the decoder layers' seven matrices, all layers (what every token multiplies
  // through: the bench's FLOPs, the FP8 bytes). Same precondition.
  int64_t DecoderMatrixParameters() const;
};

// Parses config.json text; `source` names the file in errors.
absl::StatusOr<LlamaConfig> ParseLlamaConfig(std::string_view json_text, const std::string& source);
// Reads <dir>/config.json, then <dir>/generation_config.json's eos_token_id if present
// (generation stops at the union of both, as transformers' generate does).
absl::StatusOr<LlamaConfig> LoadLlamaConfig(const std::string& checkpoint_dir);

// Human-readable one-line summary ("llama hidden=4096 layers=32 heads=32/8 ...").
std::string DescribeConfig(const LlamaConfig& config);

}  // namespace llava
