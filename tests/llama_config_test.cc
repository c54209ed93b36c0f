// config.json parsing: both published forms, every supported variant, and refusals.
#include "common/llama_config.h"
#include "common/llama_weights.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/file_util.h"
#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::StatusIs;

TEST(LlamaConfigTest, ReadsTransformers5FormWithLlama3Rope) {
  auto c = LoadLlamaConfig(testing::FixturesDir() + "/tiny-llama3");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_hidden_layers, 2);
  EXPECT_EQ(c->num_attention_heads, 4);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->num_kv_groups(), 2);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rope.factor, 8.0);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>({2}));
}

TEST(LlamaConfigTest, ReadsTiedPlainRope) {
  auto c = LoadLlamaConfig(testing::FixturesDir() + "/tiny-llama3-tied");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope.type, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(c->rope.theta, 10000.0);
  EXPECT_EQ(c->num_attention_heads, 6);
  EXPECT_EQ(c->num_key_value_heads, 3);
}

TEST(LlamaConfigTest, ReadsPublishedLlama31Form) {
  std::string path = testing::FixturesDir() + "/llama-3.1-8b-instruct.config.json";
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok()) << text.status();
  auto c = ParseLlamaConfig(*text, path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->head_dim, 128);  // derived: no head_dim field
  EXPECT_EQ(c->rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c->rope.high_freq_factor, 4.0);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>({128001, 128008, 128009}));
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  // 8.03 B parameters, as published.
  EXPECT_EQ(c->NumParameters(), 8030261248);
  // The embedded synthetic config is the same model.
  auto s = SyntheticConfig("llama-3.1-8b");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(DescribeConfig(*s), DescribeConfig(*c));
}

TEST(LlamaConfigTest, GenerationConfigEosIsAdded) {
  std::string dir = testing::MakeTempDir("cfg");
  auto text = ReadFile(testing::FixturesDir() + "/tiny-llama3/config.json");
  ASSERT_TRUE(text.ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/config.json", *text).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/generation_config.json", R"({"eos_token_id": [2, 7]})").ok());
  auto c = LoadLlamaConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
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
        BadCase{"rope_type",
                R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"rope_scaling":{"rope_type":"yarn","factor":4}})",
                "rope_type 'yarn'"},
        BadCase{"gqa",
                R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2})",
                "multiple of num_key_value_heads"},
        BadCase{"eos",
                R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"eos_token_id":[1,99]})",
                "eos_token_id 99"},
        BadCase{"eos_type",
                R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"eos_token_id":"x"})",
                "eos_token_id"},
        BadCase{"llama3_missing",
                R"({"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"rope_parameters":{"rope_type":"llama3","rope_theta":10000.0}})",
                "factor"},
        BadCase{"bias",
                R"({"model_type":"llama","attention_bias":true,"vocab_size":32})",
                "attention_bias"},
        BadCase{"zero",
                R"({"model_type":"llama","vocab_size":0,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2})",
                "vocab_size must be > 0"},
        // Found by fuzz_llama_config: the parameter count overflowed int64 (UB) when
        // DescribeConfig printed it.
        BadCase{"params_overflow",
                R"({"model_type":"llama","vocab_size":1,"hidden_size":4611686018427387904,"intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":2})",
                "hidden_size 4611686018427387904"},
        BadCase{"params_overflow_layers",
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
