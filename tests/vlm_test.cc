// The VLM forward functions against transformers' fixtures: the answer-only loss with
// an image embedding spliced in equals HF's loss and gradient, and answer generation
// equals plain greedy generation from the same embeddings.
#include "common/vlm.h"

#include <gtest/gtest.h>

#include "common/llama_forward.h"
#include "common/safetensors.h"
#include "tests/test_util.h"

namespace llava {
namespace {

class VlmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = LoadLlama(testing::FixturesDir() + "/tiny-llama3", ModelOptions());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto expected =
        SafetensorsFile::Open(testing::FixturesDir() + "/tiny-llama3/expected.safetensors");
    ASSERT_TRUE(expected.ok()) << expected.status();
    for (const char* name : {"input_ids", "image_position", "image_embeds", "labels", "loss",
                             "grad_image_embeds", "gen_from_embeds_output"}) {
      auto t = (*expected)->Load(name);
      ASSERT_TRUE(t.ok()) << t.status();
      x_[name] = *t;
    }
  }
  std::unique_ptr<LlamaModel> model_;
  std::map<std::string, at::Tensor> x_;
};

TEST_F(VlmTest, SpliceReplacesExactlyTheImageSlots) {
  at::Tensor ids = x_["input_ids"];
  const int64_t p = x_["image_position"].item<int64_t>();
  at::Tensor image = at::randn({2, 3, 64});
  at::Tensor embeds = SpliceImageEmbeds(*model_, ids, image, p);
  at::Tensor plain = EmbedTokens(*model_, ids);
  ASSERT_EQ(embeds.sizes(), plain.sizes());
  EXPECT_TRUE(at::equal(embeds.narrow(1, p, 3), image));
  EXPECT_TRUE(at::equal(embeds.narrow(1, 0, p), plain.narrow(1, 0, p)));
  EXPECT_TRUE(at::equal(embeds.narrow(1, p + 3, 12 - p - 3), plain.narrow(1, p + 3, 12 - p - 3)));
}

TEST_F(VlmTest, AnswerLossEqualsTransformersLossAndGradient) {
  at::Tensor image = x_["image_embeds"].clone().unsqueeze(1).requires_grad_(true);  // [2, 1, D]
  at::Tensor embeds =
      SpliceImageEmbeds(*model_, x_["input_ids"], image, x_["image_position"].item<int64_t>());
  AnswerLossTerms terms = AnswerLoss(*model_, embeds, x_["labels"]);
  EXPECT_EQ(terms.tokens, 2 * 4);  // the last 4 positions of each row are labelled
  at::Tensor loss = terms.sum / terms.tokens;
  loss.backward();
  EXPECT_LE(testing::RelError(loss.reshape({1}), x_["loss"]), 1e-5);
  EXPECT_LE(testing::RelError(image.grad().squeeze(1), x_["grad_image_embeds"]), 1e-4);
}

TEST_F(VlmTest, GenerateAnswersEqualsGreedyFromEmbeds) {
  const int64_t p = x_["image_position"].item<int64_t>();
  GenerationPrompt prompt;
  prompt.ids = x_["input_ids"].narrow(0, 0, 1);
  prompt.image_position = p;
  GenerateParams params;
  params.max_new_tokens = x_["gen_from_embeds_output"].size(1);
  at::Tensor image = x_["image_embeds"].narrow(0, 0, 1).unsqueeze(1);
  auto got = GenerateAnswers(*model_, prompt, image.repeat({3, 1, 1}), params);
  ASSERT_EQ(got.size(), 3u);
  at::Tensor want = x_["gen_from_embeds_output"];
  std::vector<int64_t> w(want.data_ptr<int64_t>(), want.data_ptr<int64_t>() + want.size(1));
  for (const auto& row : got) EXPECT_EQ(row, w);
}

}  // namespace
}  // namespace llava
