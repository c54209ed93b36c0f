// Prompt assembly checked token by token against the ids Hugging Face's tokenizer gives
// for the experiment's strings (tokenizer_cases.json), and the label mask.
#include "common/prompt.h"

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace llava {
namespace {

class PromptTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tok = Tokenizer::Load(testing::TokenizerPath());
    ASSERT_TRUE(tok.ok()) << tok.status() << " (run scripts/setup.sh)";
    tokenizer_ = new Tokenizer(std::move(*tok));
  }
  static void TearDownTestSuite() { delete tokenizer_; }
  static Tokenizer* tokenizer_;
};
Tokenizer* PromptTest::tokenizer_ = nullptr;

std::vector<int64_t> Row(const at::Tensor& t, int64_t r) {
  at::Tensor row = t[r].contiguous();
  return std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
}

TEST_F(PromptTest, ExperimentFormatTokenByToken) {
  PromptConfig config;
  config.questions = {"What digit is this?", "What is this number?"};
  auto builder = PromptBuilder::Create(*tokenizer_, config);
  ASSERT_TRUE(builder.ok()) << builder.status();
  PromptBatch batch = builder->Build({{0, 0, 7}, {1, 0, 3}});
  const int64_t pad = builder->pad_id();
  // From ../shared/fixtures/tokenizer_cases.json (Hugging Face tokenizers' output).
  const std::vector<int64_t> prefix = {128000, 128006, 9125, 128007, 128009, 128006, 882, 128007};
  const std::vector<int64_t> q0 = {3923, 16099, 374, 420, 30, 128006, 78191, 128007};
  const std::vector<int64_t> answer7 = {791, 16099, 374, 220, 22, 13, 128009};
  std::vector<int64_t> want0 = prefix;
  want0.push_back(pad);  // image slot
  want0.insert(want0.end(), q0.begin(), q0.end());
  want0.insert(want0.end(), answer7.begin(), answer7.end());
  EXPECT_EQ(batch.image_position, 8);
  EXPECT_EQ(batch.ids.size(1), static_cast<int64_t>(want0.size()));  // 24 tokens
  EXPECT_EQ(Row(batch.ids, 0), want0);
  std::vector<int64_t> labels0(want0.size(), -100);
  for (size_t i = want0.size() - answer7.size(); i < want0.size(); ++i) labels0[i] = want0[i];
  EXPECT_EQ(Row(batch.labels, 0), labels0);
  EXPECT_EQ(batch.answer_begin[0], 17);
  EXPECT_EQ(batch.answer_end[0], 24);

  // Row 1: "What is this number?" is one token shorter, so the row is right-padded.
  const std::vector<int64_t> q1 = {3923, 374, 420, 1396, 30, 128006, 78191, 128007};
  std::vector<int64_t> answer3 = answer7;
  answer3[4] = 18;  // "3"
  std::vector<int64_t> want1 = prefix;
  want1.push_back(pad);
  want1.insert(want1.end(), q1.begin(), q1.end());
  want1.insert(want1.end(), answer3.begin(), answer3.end());
  want1.resize(want0.size(), pad);
  EXPECT_EQ(Row(batch.ids, 1), want1);
  std::vector<int64_t> labels1 = Row(batch.labels, 1);
  int64_t labelled = 0;
  for (size_t i = 0; i < labels1.size(); ++i) {
    const bool in_answer = static_cast<int64_t>(i) >= batch.answer_begin[1] &&
                           static_cast<int64_t>(i) < batch.answer_end[1];
    EXPECT_EQ(labels1[i], in_answer ? want1[i] : -100) << i;
    labelled += in_answer;
  }
  EXPECT_EQ(labelled, 7);
  EXPECT_EQ(builder->stop_ids().front(), 128009);
}

TEST_F(PromptTest, GenerationPromptHasNoAnswer) {
  PromptConfig config;
  auto builder = PromptBuilder::Create(*tokenizer_, config);
  ASSERT_TRUE(builder.ok());
  GenerationPrompt p = builder->BuildGeneration(0);
  EXPECT_EQ(p.ids.size(1), 17);
  EXPECT_EQ(p.image_position, 8);
  EXPECT_EQ(Row(p.ids, 0).back(), 128007);
}

TEST_F(PromptTest, ChatTemplateAndImageTokens) {
  PromptConfig config;
  config.style = PromptStyle::kLlama31Chat;
  config.image_tokens = 3;
  config.answer_templates = {"It is a {label}."};
  auto builder = PromptBuilder::Create(*tokenizer_, config);
  ASSERT_TRUE(builder.ok()) << builder.status();
  PromptBatch batch = builder->Build({{0, 0, 5}});
  std::vector<int64_t> ids = Row(batch.ids, 0);
  auto decoded = tokenizer_->Decode(ids);
  ASSERT_TRUE(decoded.ok());
  const std::string pad = "<|end_of_text|>";
  EXPECT_EQ(*decoded,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n" +
                pad + pad + pad +
                "What digit is this?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
                "It is a 5.<|eot_id|>");
  EXPECT_EQ(batch.image_tokens, 3);
  auto answer = tokenizer_->Decode(builder->AnswerIds(0, 5));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(*answer, "It is a 5.<|eot_id|>");
}

TEST_F(PromptTest, BadConfigsAreRefused) {
  PromptConfig config;
  config.answer_templates = {"no label here"};
  auto b = PromptBuilder::Create(*tokenizer_, config);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("{label}"), std::string::npos);
  config = PromptConfig();
  config.questions.clear();
  EXPECT_FALSE(PromptBuilder::Create(*tokenizer_, config).ok());
  config = PromptConfig();
  config.image_tokens = 0;
  EXPECT_FALSE(PromptBuilder::Create(*tokenizer_, config).ok());
  EXPECT_FALSE(ParsePromptStyle("fancy").ok());
}

}  // namespace
}  // namespace llava
