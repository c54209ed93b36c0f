// config.json parsing: both published forms, every supported variant, and refusals.
#include "common/llama_config.h"
#include "common/llama_weights.h"

#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "tests/status_matchers.h"
#include "tests/test_util.h"

namespace llava {
namespace {

using ::llava::testing::IsOk;
using ::llava::testing::StatusIs;

// The expected values are the fixture's own config.json, read here with nlohmann: the
// tests hold for any fixture set of the README's layout.
nlohmann::json FixtureJson(const std::string& rel) {
  auto text = ReadFile(testing::FixturesDir() + "/" + rel);
  EXPECT_THAT(text, IsOk());
  return text.ok() ? nlohmann::json::parse(*text) : nlohmann::json::object();
}

std::vector<int64_t> EosIds(const nlohmann::json& j) {
  const nlohmann::json& e = j.at("eos_token_id");
  return e.is_array() ? e.get<std::vector<int64_t>>() : std::vector<int64_t>{e.get<int64_t>()};
}

// Checks the shape fields against the JSON; head_dim as given, else derived.
void ExpectShape(const LlamaConfig& c, const nlohmann::json& j) {
  EXPECT_EQ(c.vocab_size, j.at("vocab_size").get<int64_t>());
  EXPECT_EQ(c.hidden_size, j.at("hidden_size").get<int64_t>());
  EXPECT_EQ(c.intermediate_size, j.at("intermediate_size").get<int64_t>());
  EXPECT_EQ(c.num_hidden_layers, j.at("num_hidden_layers").get<int64_t>());
  EXPECT_EQ(c.num_attention_heads, j.at("num_attention_heads").get<int64_t>());
  EXPECT_EQ(c.num_key_value_heads, j.at("num_key_value_heads").get<int64_t>());
  EXPECT_EQ(c.head_dim, j.contains("head_dim") ? j.at("head_dim").get<int64_t>()
                                               : c.hidden_size / c.num_attention_heads);
  EXPECT_EQ(c.num_kv_groups(), c.num_attention_heads / c.num_key_value_heads);
  EXPECT_EQ(c.tie_word_embeddings, j.value("tie_word_embeddings", false));
}

// The rope settings of `rope` (transformers 5's rope_parameters, or the published
// rope_theta + rope_scaling) as read.
void ExpectRope(const LlamaConfig& c, const nlohmann::json& theta_holder,
                const nlohmann::json& scaling) {
  EXPECT_DOUBLE_EQ(c.rope.theta, theta_holder.at("rope_theta").get<double>());
  const std::string type = scaling.is_object() ? scaling.value("rope_type", "default") : "default";
  EXPECT_EQ(c.rope.type, type == "llama3" ? RopeType::kLlama3 : RopeType::kDefault);
  if (type != "llama3") return;
  EXPECT_DOUBLE_EQ(c.rope.factor, scaling.at("factor").get<double>());
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, scaling.at("low_freq_factor").get<double>());
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, scaling.at("high_freq_factor").get<double>());
  EXPECT_EQ(c.rope.original_max_position_embeddings,
            scaling.at("original_max_position_embeddings").get<int64_t>());
}

TEST(LlamaConfigTest, ReadsTransformers5FormWithLlama3Rope) {
  const nlohmann::json j = FixtureJson("tiny-llama3/config.json");
  ASSERT_TRUE(j.contains("rope_parameters")) << "the fixture is not in transformers 5's form";
  auto c = LoadLlamaConfig(testing::FixturesDir() + "/tiny-llama3");
  ASSERT_THAT(c, IsOk());
  ExpectShape(*c, j);
  ExpectRope(*c, j.at("rope_parameters"), j.at("rope_parameters"));
  EXPECT_EQ(c->eos_token_ids, EosIds(j));
}

TEST(LlamaConfigTest, ReadsTiedPlainRope) {
  const nlohmann::json j = FixtureJson("tiny-llama3-tied/config.json");
  auto c = LoadLlamaConfig(testing::FixturesDir() + "/tiny-llama3-tied");
  ASSERT_THAT(c, IsOk());
  EXPECT_TRUE(c->tie_word_embeddings);
  ExpectShape(*c, j);
  ExpectRope(*c, j.at("rope_parameters"), j.at("rope_parameters"));
}

// Llama's parameter count from its shape, computed apart from LlamaConfig's own.
int64_t CountParameters(const nlohmann::json& j) {
  const int64_t v = j.at("vocab_size"), h = j.at("hidden_size"), f = j.at("intermediate_size"),
                l = j.at("num_hidden_layers"), heads = j.at("num_attention_heads"),
                kv = j.at("num_key_value_heads");
  const int64_t hd = j.contains("head_dim") ? j.at("head_dim").get<int64_t>() : h / heads;
  const int64_t attention = h * heads * hd * 2 + h * kv * hd * 2;  // q, o; k, v
  const int64_t layer = attention + 3 * h * f + 2 * h;             // + mlp, two norms
  const bool tied = j.value("tie_word_embeddings", false);
  return v * h * (tied ? 1 : 2) + l * layer + h;
}

TEST(LlamaConfigTest, ReadsPublishedLlama31Form) {
  std::string path = testing::FixturesDir() + "/llama-3.1-8b-instruct.config.json";
  const nlohmann::json j = FixtureJson("llama-3.1-8b-instruct.config.json");
  ASSERT_TRUE(j.contains("rope_scaling") && !j.contains("rope_parameters"))
      << "not the published form";
  auto text = ReadFile(path);
  ASSERT_THAT(text, IsOk());
  auto c = ParseLlamaConfig(*text, path);
  ASSERT_THAT(c, IsOk());
  ExpectShape(*c, j);
  ExpectRope(*c, j, j.at("rope_scaling"));
  EXPECT_EQ(c->eos_token_ids, EosIds(j));
  EXPECT_EQ(c->torch_dtype, j.at("torch_dtype").get<std::string>());
  EXPECT_EQ(c->NumParameters(), CountParameters(j));
  // The embedded synthetic config is the same model.
  auto s = SyntheticConfig("llama-3.1-8b");
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(DescribeConfig(*s), DescribeConfig(*c));
}

TEST(LlamaConfigTest, GenerationConfigEosIsAdded) {
  std::string dir = testing::MakeTempDir("cfg");
  auto text = ReadFile(testing::FixturesDir() + "/tiny-llama3/config.json");
  ASSERT_THAT(text, IsOk());
  ASSERT_THAT(WriteFileAtomic(dir + "/config.json", *text), IsOk());
  ASSERT_THAT(WriteFileAtomic(dir + "/generation_config.json", R"({"eos_token_id": [2, 7]})"),
              IsOk());
  auto c = LoadLlamaConfig(dir);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>({2, 7}));
}

struct BadCase {
  const char* name;
  const char* json;
  const char* expect;  // substring of the error
};

class LlamaConfigBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(LlamaConfigBadTest, RefusedClearly) {
  auto c = ParseLlamaConfig(GetParam().json, "dir/config.json");
  ASSERT_FALSE(c.ok()) << GetParam().name;
  EXPECT_NE(c.status().message().find("dir/config.json"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find(GetParam().expect), std::string::npos) << c.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LlamaConfigBadTest,
    ::testing::Values(
        BadCase{"not_json", "{oops", "not valid JSON"},
        BadCase{"array", "[1,2]", "not a JSON object"},
        BadCase{"arch", R"({"model_type":"mistral"})", "model_type 'mistral'"},
        BadCase{"arch2", R"({"model_type":"llama","architectures":["LlamaModel"],"vocab_size":1})",
                "LlamaModel"},
        BadCase{"missing", R"({"model_type":"llama","vocab_size":32})", "hidden_size"},
        BadCase{"type", R"({"model_type":"llama","vocab_size":"32"})", "vocab_size"},
        BadCase{
            "rope_type",
            R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"rope_scaling":{"rope_type":"yarn","factor":4}})",
            "rope_type 'yarn'"},
        BadCase{
            "gqa",
            R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2})",
            "multiple of num_key_value_heads"},
        BadCase{
            "eos",
            R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"eos_token_id":[1,99]})",
            "eos_token_id 99"},
        BadCase{
            "eos_type",
            R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"eos_token_id":"x"})",
            "eos_token_id"},
        BadCase{
            "llama3_missing",
            R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"rope_parameters":{"rope_type":"llama3","rope_theta":10000.0}})",
            "factor"},
        BadCase{"bias", R"({"model_type":"llama","attention_bias":true,"vocab_size":32})",
                "attention_bias"},
        BadCase{
            "zero",
            R"({"model_type":"llama","vocab_size":0,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2})",
            "vocab_size must be > 0"},
        // Found by fuzz_llama_config: the parameter count overflowed int64 (UB) when
        // DescribeConfig printed it.
        BadCase{
            "params_overflow",
            R"({"model_type":"llama","vocab_size":1,"hidden_size":4611686018427387904,"intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":2})",
            "hidden_size 4611686018427387904"},
        BadCase{
            "params_overflow_layers",
            R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":9223372036854775807,"num_attention_heads":2})",
            "give more parameters than int64 holds"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

// Found by fuzz_llama_config: an architectures entry nested a million levels deep
// overflowed the stack while its error message was built. Now refused by depth.
TEST(LlamaConfigTest, DeeplyNestedJsonIsRefused) {
  const std::string json = R"({"model_type":"llama","architectures":[)" +
                           std::string(1000000, '[') + std::string(1000000, ']') + "]}";
  auto c = ParseLlamaConfig(json, "dir/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(c.status().message().find("dir/config.json: JSON nested deeper than 64 levels"),
            std::string::npos)
      << c.status();
}

TEST(LlamaConfigTest, MissingFileNamesPath) {
  auto c = LoadLlamaConfig("/no/such/checkpoint");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("/no/such/checkpoint/config.json"), std::string::npos);
}

}  // namespace
}  // namespace llava
