#include "common/llama_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <initializer_list>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/json_depth.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace llava {
namespace {

using json = nlohmann::json;

absl::Status FieldError(const std::string& source, absl::string_view field,
                        absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": field '", field, "' ", problem));
}

// Reads an integer field; absent is fine when `required` is false.
absl::Status ReadInt(const json& j, const std::string& source, const char* field, bool required,
                     int64_t* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    return required ? FieldError(source, field, "is missing") : absl::OkStatus();
  }
  if (!it->is_number_integer()) return FieldError(source, field, "must be an integer");
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const json& j, const std::string& source, const char* field, bool required,
                        double* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    return required ? FieldError(source, field, "is missing") : absl::OkStatus();
  }
  if (!it->is_number()) return FieldError(source, field, "must be a number");
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadIdList(const json& j, const std::string& source, const char* field,
                        std::vector<int64_t>* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (it->is_number_integer()) {
    out->push_back(it->get<int64_t>());
    return absl::OkStatus();
  }
  if (!it->is_array()) return FieldError(source, field, "must be an integer or a list");
  for (const json& v : *it) {
    if (!v.is_number_integer()) return FieldError(source, field, "must hold integers");
    out->push_back(v.get<int64_t>());
  }
  return absl::OkStatus();
}

// rope settings: transformers 5 nests everything in `rope_parameters` (theta included);
// published 3.1 checkpoints have `rope_theta` and an optional `rope_scaling` object.
absl::Status ReadRope(const json& j, const std::string& source, RopeConfig* rope) {
  const json* params = nullptr;
  const char* params_name = "rope_parameters";
  if (auto it = j.find("rope_parameters"); it != j.end() && !it->is_null()) {
    params = &*it;
  } else if (auto it2 = j.find("rope_scaling"); it2 != j.end() && !it2->is_null()) {
    params = &*it2;
    params_name = "rope_scaling";
  }
  LM_RETURN_IF_ERROR(ReadDouble(j, source, "rope_theta", false, &rope->theta));
  if (params == nullptr) return absl::OkStatus();
  if (!params->is_object()) return FieldError(source, params_name, "must be an object");
  const std::string where = absl::StrCat(source, " ", params_name);
  LM_RETURN_IF_ERROR(ReadDouble(*params, where, "rope_theta", false, &rope->theta));
  std::string type = "default";
  if (auto t = params->find("rope_type"); t != params->end()) {
    if (!t->is_string()) return FieldError(where, "rope_type", "must be a string");
    type = t->get<std::string>();
  } else if (auto t2 = params->find("type"); t2 != params->end() && t2->is_string()) {
    type = t2->get<std::string>();  // older configs
  }
  if (type == "default") {
    rope->type = RopeType::kDefault;
    return absl::OkStatus();
  }
  if (type != "llama3") {
    return absl::UnimplementedError(absl::StrCat(
        where, ": rope_type '", type, "' is not supported (supported: default, llama3)"));
  }
  rope->type = RopeType::kLlama3;
  LM_RETURN_IF_ERROR(ReadDouble(*params, where, "factor", true, &rope->factor));
  LM_RETURN_IF_ERROR(ReadDouble(*params, where, "low_freq_factor", true, &rope->low_freq_factor));
  LM_RETURN_IF_ERROR(ReadDouble(*params, where, "high_freq_factor", true, &rope->high_freq_factor));
  LM_RETURN_IF_ERROR(ReadInt(*params, where, "original_max_position_embeddings", true,
                             &rope->original_max_position_embeddings));
  return absl::OkStatus();
}

// *acc += the product of `factors`; false on int64 overflow.
bool AddProduct(int64_t* acc, std::initializer_list<int64_t> factors) {
  int64_t product = 1;
  for (int64_t f : factors) {
    if (__builtin_mul_overflow(product, f, &product)) return false;
  }
  return !__builtin_add_overflow(*acc, product, acc);
}

// The parameter count, or nullopt when the sizes (as a corrupt or hostile config.json can
// give them) make it overflow int64.
std::optional<int64_t> CountParameters(const LlamaConfig& c) {
  const int64_t d = c.hidden_size;
  int64_t per_layer = 0, total = 0;
  if (!AddProduct(&per_layer, {d, c.num_attention_heads, c.head_dim, 2}) ||
      !AddProduct(&per_layer, {d, c.num_key_value_heads, c.head_dim, 2}) ||
      !AddProduct(&per_layer, {3, d, c.intermediate_size}) || !AddProduct(&per_layer, {2, d}) ||
      !AddProduct(&total, {c.vocab_size, d, c.tie_word_embeddings ? 1 : 2}) ||
      !AddProduct(&total, {c.num_hidden_layers, per_layer}) || !AddProduct(&total, {d})) {
    return std::nullopt;
  }
  return total;
}

}  // namespace

absl::Status LlamaConfig::Validate() const {
  LM_RETURN_IF_ERROR(CheckPositive("vocab_size", vocab_size));
  LM_RETURN_IF_ERROR(CheckPositive("hidden_size", hidden_size));
  LM_RETURN_IF_ERROR(CheckPositive("intermediate_size", intermediate_size));
  LM_RETURN_IF_ERROR(CheckPositive("num_hidden_layers", num_hidden_layers));
  LM_RETURN_IF_ERROR(CheckPositive("num_attention_heads", num_attention_heads));
  LM_RETURN_IF_ERROR(CheckPositive("num_key_value_heads", num_key_value_heads));
  LM_RETURN_IF_ERROR(CheckPositive("head_dim", head_dim));
  LM_RETURN_IF_ERROR(CheckPositive("max_position_embeddings", max_position_embeddings));
  if (num_attention_heads % num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_attention_heads (", num_attention_heads,
                                                   ") must be a multiple of num_key_value_heads (",
                                                   num_key_value_heads, ")"));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim must be even, got ", head_dim));
  }
  if (!CountParameters(*this)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the sizes (vocab_size ", vocab_size, ", hidden_size ", hidden_size, ", intermediate_size ",
        intermediate_size, ", num_hidden_layers ", num_hidden_layers, ", num_attention_heads ",
        num_attention_heads, ", num_key_value_heads ", num_key_value_heads, ", head_dim ", head_dim,
        ") give more parameters than int64 holds"));
  }
  if (!(rms_norm_eps > 0)) return absl::InvalidArgumentError("rms_norm_eps must be > 0");
  if (!(rope.theta > 0)) return absl::InvalidArgumentError("rope_theta must be > 0");
  if (rope.type == RopeType::kLlama3) {
    if (!(rope.factor > 0) || !(rope.low_freq_factor > 0) ||
        !(rope.high_freq_factor > rope.low_freq_factor) ||
        rope.original_max_position_embeddings <= 0) {
      return absl::InvalidArgumentError(
          "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor "
          "and original_max_position_embeddings > 0");
    }
  }
  for (int64_t id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("eos_token_id ", id, " is outside the vocabulary of ", vocab_size));
    }
  }
  return absl::OkStatus();
}

int64_t LlamaConfig::NumParameters() const {
  const std::optional<int64_t> n = CountParameters(*this);
  LM_CHECK(n.has_value()) << "NumParameters() of a config that Validate() refuses";
  return *n;
}

int64_t LlamaConfig::DecoderMatrixParameters() const {
  const int64_t q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  return num_hidden_layers * (hidden_size * (2 * q + 2 * kv) + 3 * hidden_size * intermediate_size);
}

absl::StatusOr<LlamaConfig> ParseLlamaConfig(std::string_view json_text,
                                             const std::string& source) {
  if (auto at = JsonNestingExceeds(json_text)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": JSON nested deeper than ", kMaxJsonDepth, " levels at byte ", *at));
  }
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  if (!j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));

  // Refuse architectures whose forward pass differs from Llama's, rather than computing
  // something silently wrong.
  std::string model_type;
  if (auto it = j.find("model_type"); it != j.end() && it->is_string()) {
    model_type = it->get<std::string>();
  }
  if (model_type != "llama") {
    return absl::UnimplementedError(
        absl::StrCat(source, ": model_type '", model_type, "' is not supported (only 'llama')"));
  }
  if (auto it = j.find("architectures"); it != j.end() && it->is_array()) {
    for (const json& a : *it) {
      if (!a.is_string() || a.get<std::string>() != "LlamaForCausalLM") {
        return absl::UnimplementedError(absl::StrCat(source, ": architecture ", a.dump(),
                                                     " is not supported (only LlamaForCausalLM)"));
      }
    }
  }
  for (const char* flag : {"attention_bias", "mlp_bias"}) {
    if (auto it = j.find(flag); it != j.end() && it->is_boolean() && it->get<bool>()) {
      return absl::UnimplementedError(absl::StrCat(source, ": ", flag, "=true is not supported"));
    }
  }
  if (auto it = j.find("hidden_act");
      it != j.end() && it->is_string() && it->get<std::string>() != "silu") {
    return absl::UnimplementedError(
        absl::StrCat(source, ": hidden_act '", it->get<std::string>(), "' is not supported"));
  }
  if (auto it = j.find("pretraining_tp");
      it != j.end() && it->is_number_integer() && it->get<int64_t>() != 1) {
    return absl::UnimplementedError(absl::StrCat(source, ": pretraining_tp != 1 is not supported"));
  }

  LlamaConfig c;
  LM_RETURN_IF_ERROR(ReadInt(j, source, "vocab_size", true, &c.vocab_size));
  LM_RETURN_IF_ERROR(ReadInt(j, source, "hidden_size", true, &c.hidden_size));
  LM_RETURN_IF_ERROR(ReadInt(j, source, "intermediate_size", true, &c.intermediate_size));
  LM_RETURN_IF_ERROR(ReadInt(j, source, "num_hidden_layers", true, &c.num_hidden_layers));
  LM_RETURN_IF_ERROR(ReadInt(j, source, "num_attention_heads", true, &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;
  LM_RETURN_IF_ERROR(ReadInt(j, source, "num_key_value_heads", false, &c.num_key_value_heads));
  if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  LM_RETURN_IF_ERROR(ReadInt(j, source, "head_dim", false, &c.head_dim));
  LM_RETURN_IF_ERROR(
      ReadInt(j, source, "max_position_embeddings", false, &c.max_position_embeddings));
  LM_RETURN_IF_ERROR(ReadDouble(j, source, "rms_norm_eps", false, &c.rms_norm_eps));
  LM_RETURN_IF_ERROR(ReadInt(j, source, "bos_token_id", false, &c.bos_token_id));
  LM_RETURN_IF_ERROR(ReadIdList(j, source, "eos_token_id", &c.eos_token_ids));
  if (auto it = j.find("tie_word_embeddings"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return FieldError(source, "tie_word_embeddings", "must be a boolean");
    c.tie_word_embeddings = it->get<bool>();
  }
  for (const char* key : {"dtype", "torch_dtype"}) {
    if (auto it = j.find(key); it != j.end() && it->is_string()) {
      c.torch_dtype = it->get<std::string>();
      break;
    }
  }
  LM_RETURN_IF_ERROR(ReadRope(j, source, &c.rope));
  absl::Status valid = c.Validate();
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", valid.message()));
  return c;
}

absl::StatusOr<LlamaConfig> LoadLlamaConfig(const std::string& checkpoint_dir) {
  const std::string path = checkpoint_dir + "/config.json";
  LM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  LM_ASSIGN_OR_RETURN(LlamaConfig config, ParseLlamaConfig(text, path));
  const std::string gen_path = checkpoint_dir + "/generation_config.json";
  if (FileExists(gen_path)) {
    LM_ASSIGN_OR_RETURN(std::string gen_text, ReadFile(gen_path));
    if (auto at = JsonNestingExceeds(gen_text)) {
      return absl::InvalidArgumentError(absl::StrCat(gen_path, ": JSON nested deeper than ",
                                                     kMaxJsonDepth, " levels at byte ", *at));
    }
    json g = json::parse(gen_text, nullptr, false);
    if (g.is_discarded() || !g.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(gen_path, ": not a JSON object"));
    }
    std::vector<int64_t> more;
    LM_RETURN_IF_ERROR(ReadIdList(g, gen_path, "eos_token_id", &more));
    for (int64_t id : more) {
      if (id < 0 || id >= config.vocab_size) {
        return FieldError(gen_path, "eos_token_id",
                          absl::StrCat("holds ", id, ", outside the vocabulary"));
      }
      if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) ==
          config.eos_token_ids.end()) {
        config.eos_token_ids.push_back(id);
      }
    }
  }
  return config;
}

std::string DescribeConfig(const LlamaConfig& c) {
  return absl::StrCat("llama vocab=", c.vocab_size, " hidden=", c.hidden_size,
                      " layers=", c.num_hidden_layers, " heads=", c.num_attention_heads, "/",
                      c.num_key_value_heads, " head_dim=", c.head_dim, " ffn=", c.intermediate_size,
                      " rope=", c.rope.type == RopeType::kLlama3 ? "llama3" : "default",
                      "(theta=", c.rope.theta, ") tied=", c.tie_word_embeddings ? "yes" : "no",
                      " eos=[", absl::StrJoin(c.eos_token_ids, ","),
                      "] params=", c.NumParameters());
}

}  // namespace llava
