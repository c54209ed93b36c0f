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
  std::unique_ptr<const LlamaModel> model_;
  ForwardOptions forward_;  // the defaults
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
  AnswerLossTerms terms = AnswerLoss(*model_, forward_, embeds, x_["labels"]);
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
  auto got = GenerateAnswers(*model_, forward_, prompt, image.repeat({3, 1, 1}), params);
  ASSERT_EQ(got.size(), 3u);
  at::Tensor want = x_["gen_from_embeds_output"];
  std::vector<int64_t> w(want.data_ptr<int64_t>(), want.data_ptr<int64_t>() + want.size(1));
  for (const auto& row : got) EXPECT_EQ(row, w);
}

// Per row, from that row's own prefix: the image-onward loss terms (their sum over the
// rows over the token count is HF's mean loss) and the gradient equal transformers'.
TEST_F(VlmTest, AnswerLossFromPrefixEqualsTransformersLossAndGradient) {
  const int64_t p = x_["image_position"].item<int64_t>();
  at::Tensor total = at::zeros({});
  std::vector<at::Tensor> grads;
  for (int64_t r = 0; r < 2; ++r) {
    at::Tensor ids = x_["input_ids"].narrow(0, r, 1);
    PromptPrefix prefix = ComputePromptPrefix(*model_, forward_, ids, p);
    EXPECT_EQ(prefix.kv.length, p);
    at::Tensor image = x_["image_embeds"].narrow(0, r, 1).clone().unsqueeze(1).requires_grad_(true);
    AnswerLossTerms terms = AnswerLossFromPrefix(*model_, forward_, prefix, ids, image, p,
                                                 x_["labels"].narrow(0, r, 1));
    EXPECT_EQ(terms.tokens, 4);
    (terms.sum / 8).backward();
    total = total + terms.sum.detach() / 8;
    grads.push_back(image.grad().squeeze(1));
  }
  EXPECT_LE(testing::RelError(total.reshape({1}), x_["loss"]), 1e-5);
  EXPECT_LE(testing::RelError(at::cat(grads), x_["grad_image_embeds"]), 1e-4);
}

// A batch whose rows share the prefix but not the rest, with labels of different
// lengths (as padded rows have): the same terms and gradient as the plain AnswerLoss.
TEST_F(VlmTest, AnswerLossFromPrefixEqualsPlainAnswerLoss) {
  const int64_t p = x_["image_position"].item<int64_t>();
  at::Tensor ids = x_["input_ids"].clone();
  ids[1].narrow(0, 0, p).copy_(ids[0].narrow(0, 0, p));
  at::Tensor labels = x_["labels"].clone();
  labels[1].narrow(0, 8, 4).fill_(-100);  // row 1: only positions 8 and 9 labelled
  labels[1][8] = ids[1][8];
  labels[1][9] = ids[1][9];
  at::Tensor image0 = at::randn({2, 2, 64}, at::TensorOptions().dtype(at::kFloat));
  at::Tensor a = image0.clone().requires_grad_(true), b = image0.clone().requires_grad_(true);
  AnswerLossTerms plain =
      AnswerLoss(*model_, forward_, SpliceImageEmbeds(*model_, ids, a, p), labels);
  PromptPrefix prefix = ComputePromptPrefix(*model_, forward_, ids, p);
  ASSERT_TRUE(PrefixMatches(prefix, ids, p));
  AnswerLossTerms fast = AnswerLossFromPrefix(*model_, forward_, prefix, ids, b, p, labels);
  EXPECT_EQ(plain.tokens, 4 + 2);
  EXPECT_EQ(fast.tokens, plain.tokens);
  EXPECT_LE(testing::RelError(fast.sum.reshape({1}), plain.sum.reshape({1})), 1e-6);
  plain.sum.backward();
  fast.sum.backward();
  EXPECT_LE(testing::RelError(b.grad(), a.grad()), 1e-5);
  // A row with another prefix is refused by PrefixMatches (and so never mixed in).
  at::Tensor other = ids.clone();
  other[1][0] = other[1][0].item<int64_t>() + 1;
  EXPECT_FALSE(PrefixMatches(prefix, other, p));
  EXPECT_FALSE(PrefixMatches(prefix, ids, p - 1));
}

TEST_F(VlmTest, GenerateAnswersFromPrefixEqualsWithout) {
  const int64_t p = x_["image_position"].item<int64_t>();
  GenerationPrompt prompt;
  prompt.ids = x_["input_ids"].narrow(0, 0, 1);
  prompt.image_position = p;
  GenerateParams params;
  params.max_new_tokens = 10;
  params.stop_at_eos = false;
  at::Tensor image = at::randn({5, 1, 64});
  PromptPrefix prefix = ComputePromptPrefix(*model_, forward_, prompt.ids, p);
  auto plain = GenerateAnswers(*model_, forward_, prompt, image, params);
  auto fast = GenerateAnswers(*model_, forward_, prompt, image, params, &prefix);
  EXPECT_EQ(fast, plain);
  // The first row's image from the fixture: transformers' own greedy tokens.
  params.max_new_tokens = x_["gen_from_embeds_output"].size(1);
  auto fixture = GenerateAnswers(*model_, forward_, prompt,
                                 x_["image_embeds"].narrow(0, 0, 1).unsqueeze(1), params, &prefix);
  at::Tensor want = x_["gen_from_embeds_output"];
  EXPECT_EQ(fixture[0], std::vector<int64_t>(want.data_ptr<int64_t>(),
                                             want.data_ptr<int64_t>() + want.size(1)));
}

}  // namespace
}  // namespace llava
