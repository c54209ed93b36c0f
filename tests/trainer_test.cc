// The single-process trainer: the projector's gradient through the frozen LM against
// finite differences, ranks' gradient shares summing to the one-process gradient,
// checkpoint resume continuing bit for bit, and a short run on the demo LM that learns.
#include "worker/trainer.h"

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "common/train_checkpoint.h"
#include "common/vlm.h"
#include "tests/synthetic_digits.h"
#include "tests/test_util.h"
#include "worker/evaluator.h"

namespace llava {
namespace {

using testing::SyntheticDigits;

// synthetic:tiny has the real Llama 3.1 vocabulary, so the real tokenizer and prompt
// serve; its weights are random, which is all that the mechanics tested here need.
class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tok = Tokenizer::Load(testing::TokenizerPath());
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::make_unique<Tokenizer>(std::move(*tok));
    auto model = LoadLlama("synthetic:tiny", ModelOptions());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    PromptConfig pc;
    pc.questions = {"What digit is this?", "What is this number?"};
    auto prompts = PromptBuilder::Create(*tokenizer_, pc);
    ASSERT_TRUE(prompts.ok()) << prompts.status();
    prompts_ = std::make_unique<PromptBuilder>(std::move(*prompts));
    data_ = SyntheticDigits(40);
  }

  TrainConfig Config() const {
    TrainConfig c;
    c.model_spec = "synthetic:tiny";
    c.projector.type = ProjectorType::kMlp2xGelu;
    c.projector.output_dim = model_->config.hidden_size;
    c.batch_size = 4;
    c.train_digits = 40;
    c.epochs = 2;
    c.seed = 7;
    return c;
  }

  std::vector<at::Tensor> Params(Trainer& t) {
    std::vector<at::Tensor> out;
    for (auto& [name, p] : t.projector()->NamedParameters()) out.push_back(p.detach().clone());
    return out;
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<const LlamaModel> model_;
  ForwardOptions forward_;  // the defaults
  std::unique_ptr<PromptBuilder> prompts_;
  MnistSet data_;
};

TEST_F(TrainerTest, RankSharesSumToTheOneProcessGradient) {
  TrainConfig one = Config();
  one.batch_size = 8;
  auto single = Trainer::Create(*model_, forward_, *prompts_, data_, one, "");
  ASSERT_TRUE(single.ok()) << single.status();
  StepStats s = (*single)->ComputeGradients(0);
  std::vector<at::Tensor> want;
  for (auto& [name, p] : (*single)->projector()->NamedParameters())
    want.push_back(p.grad().clone());

  TrainConfig two = Config();
  two.batch_size = 2;  // 2 ranks x 2 micro-batches x 2 = the same 8 samples
  two.grad_accum = 2;
  two.world_size = 2;
  std::vector<at::Tensor> sum;
  double loss_sum = 0;
  for (int64_t rank = 0; rank < 2; ++rank) {
    auto t = Trainer::Create(*model_, forward_, *prompts_, data_, two, "");
    ASSERT_TRUE(t.ok()) << t.status();
    StepStats r = (*t)->ComputeGradients(rank);
    loss_sum += r.loss_sum;
    size_t i = 0;
    for (auto& [name, p] : (*t)->projector()->NamedParameters()) {
      if (rank == 0)
        sum.push_back(p.grad().clone());
      else
        sum[i] += p.grad();
      ++i;
    }
  }
  EXPECT_NEAR(loss_sum, s.loss_sum, 1e-3 * std::abs(s.loss_sum));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_LE(testing::RelError(sum[i], want[i]), 1e-5);
}

// Augmentation is drawn per digit from the seed, the epoch and the digit's index, so the
// ranks' shares of an augmented step still sum to the one process's gradient (N ranks x
// B/N = 1 x B), the same seed gives the same step bit for bit, and it changes the step.
TEST_F(TrainerTest, AugmentedRankSharesSumToTheOneProcessGradient) {
  TrainConfig one = Config();
  one.batch_size = 8;
  one.augment.shift_px = 2;
  one.augment.rotate_deg = 10;
  one.augment.scale = 0.1;
  auto grads = [](Trainer& t) {
    std::vector<at::Tensor> out;
    for (auto& [name, p] : t.projector()->NamedParameters()) out.push_back(p.grad().clone());
    return out;
  };
  auto single = Trainer::Create(*model_, forward_, *prompts_, data_, one, "");
  ASSERT_TRUE(single.ok()) << single.status();
  const StepStats s = (*single)->ComputeGradients(0);
  const std::vector<at::Tensor> want = grads(**single);

  auto again = Trainer::Create(*model_, forward_, *prompts_, data_, one, "");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->ComputeGradients(0).loss_sum, s.loss_sum);
  const std::vector<at::Tensor> same = grads(**again);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(at::equal(same[i], want[i]));

  TrainConfig plain = one;
  plain.augment = AugmentConfig();
  auto unaugmented = Trainer::Create(*model_, forward_, *prompts_, data_, plain, "");
  ASSERT_TRUE(unaugmented.ok());
  EXPECT_NE((*unaugmented)->ComputeGradients(0).loss_sum, s.loss_sum);
  EXPECT_GT(testing::RelError(grads(**unaugmented)[0], want[0]), 1e-3);

  for (int64_t world : {2, 4}) {
    TrainConfig sharded = one;
    sharded.world_size = world;
    sharded.batch_size = 2;  // world x (8 / world / 2) micro-batches x 2 = the same 8 samples
    sharded.grad_accum = 8 / world / 2;
    std::vector<at::Tensor> sum;
    double loss_sum = 0;
    for (int64_t rank = 0; rank < world; ++rank) {
      auto t = Trainer::Create(*model_, forward_, *prompts_, data_, sharded, "");
      ASSERT_TRUE(t.ok()) << t.status();
      loss_sum += (*t)->ComputeGradients(rank).loss_sum;
      const std::vector<at::Tensor> g = grads(**t);
      for (size_t i = 0; i < g.size(); ++i) {
        if (rank == 0)
          sum.push_back(g[i]);
        else
          sum[i] += g[i];
      }
    }
    EXPECT_NEAR(loss_sum, s.loss_sum, 1e-5 * std::abs(s.loss_sum)) << world << " ranks";
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_LE(testing::RelError(sum[i], want[i]), 1e-5) << world << " ranks";
    }
  }
}

// The product's fast path (the prompt prefix's keys and values computed once, each batch
// run from the image position to the last answer position) against the plain path over
// the whole prompt: the same loss and projector gradient on the same step.
TEST_F(TrainerTest, SharedPrefixPathEqualsThePlainPath) {
  TrainConfig fast = Config();
  fast.batch_size = 8;
  TrainConfig plain = fast;
  plain.reuse_prefix_kv = false;
  auto a = Trainer::Create(*model_, forward_, *prompts_, data_, fast, "");
  auto b = Trainer::Create(*model_, forward_, *prompts_, data_, plain, "");
  ASSERT_TRUE(a.ok() && b.ok());
  for (int step = 0; step < 2; ++step) {  // the second step reuses the cached prefix
    StepStats sa = (*a)->ComputeGradients(0);
    StepStats sb = (*b)->ComputeGradients(0);
    EXPECT_EQ(sa.tokens, sb.tokens);
    EXPECT_NEAR(sa.loss_sum, sb.loss_sum, 1e-5 * std::abs(sb.loss_sum));
    auto ga = (*a)->projector()->NamedParameters();
    auto gb = (*b)->projector()->NamedParameters();
    ASSERT_EQ(ga.size(), gb.size());
    for (size_t i = 0; i < ga.size(); ++i) {
      EXPECT_LE(testing::RelError(ga[i].second.grad(), gb[i].second.grad()), 1e-5) << ga[i].first;
    }
    ASSERT_TRUE((*a)->ApplyGradients(&sa).ok());
    ASSERT_TRUE((*b)->ApplyGradients(&sb).ok());
  }
}

TEST_F(TrainerTest, GradientMatchesFiniteDifferences) {
  // float64 end to end: the frozen LM and the projector.
  ModelOptions options;
  options.dtype = at::kDouble;
  auto model = LoadLlama(testing::FixturesDir() + "/tiny-llama3", options);
  ASSERT_TRUE(model.ok()) << model.status();
  ProjectorConfig pc;
  pc.type = ProjectorType::kMlp2xGelu;
  pc.output_dim = (*model)->config.hidden_size;
  pc.hidden_dim = 16;
  Projector projector(pc, 3);
  projector->to(at::kDouble);
  at::Tensor ids = at::randint(0, 500, {3, 10}, at::kLong);
  at::Tensor labels = at::full({3, 10}, -100, at::kLong);
  labels.narrow(1, 6, 4).copy_(ids.narrow(1, 6, 4));
  at::Tensor pixels = at::rand({3, 784}, at::kDouble);
  auto loss_of = [&]() {
    at::Tensor embeds = SpliceImageEmbeds(**model, ids, projector->forward(pixels), 2);
    AnswerLossTerms t = AnswerLoss(**model, ForwardOptions(), embeds, labels);
    return t.sum / t.tokens;
  };
  loss_of().backward();
  auto params = projector->NamedParameters();
  at::Generator gen = at::detail::createCPUGenerator(11);
  int checked = 0;
  for (auto& [name, p] : params) {
    at::Tensor flat = p.detach().view({-1});
    at::Tensor grad = p.grad().view({-1});
    for (int k = 0; k < 5; ++k) {
      const int64_t i = at::randint(0, flat.numel(), {1}, gen, at::kLong).item<int64_t>();
      const double h = 1e-6, orig = flat[i].item<double>();
      double up, down;
      {
        at::NoGradGuard ng;
        flat[i] = orig + h;
        up = loss_of().item<double>();
        flat[i] = orig - h;
        down = loss_of().item<double>();
        flat[i] = orig;
      }
      const double numeric = (up - down) / (2 * h);
      const double analytic = grad[i].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-4 * std::abs(numeric)) << name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 20);
}

TEST_F(TrainerTest, ResumeFromCheckpointContinuesBitForBit) {
  const std::string dir = testing::MakeTempDir("trainer");
  TrainConfig c = Config();
  auto straight = Trainer::Create(*model_, forward_, *prompts_, data_, c, "");
  ASSERT_TRUE(straight.ok()) << straight.status();
  const int64_t total = (*straight)->total_steps();
  ASSERT_EQ(total, 20);
  while (!(*straight)->done()) ASSERT_TRUE((*straight)->TrainStep().ok());

  auto first = Trainer::Create(*model_, forward_, *prompts_, data_, c, "");
  ASSERT_TRUE(first.ok());
  for (int i = 0; i < 7; ++i) ASSERT_TRUE((*first)->TrainStep().ok());
  ASSERT_TRUE((*first)->SaveCheckpoint(dir + "/ckpt.safetensors").ok());
  auto second = Trainer::Create(*model_, forward_, *prompts_, data_, c, dir + "/ckpt.safetensors");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->step(), 7);
  while (!(*second)->done()) ASSERT_TRUE((*second)->TrainStep().ok());

  std::vector<at::Tensor> a = Params(**straight), b = Params(**second);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << i;
}

// Loss scaling (what a float16 model always gets) scales the backward pass by a power of
// two and divides it out of the float32 gradients: in float32 the step equals the
// unscaled one up to rounding (the normalizer divides after the backward pass instead of
// before it; measured 2e-6 to 8e-6 on these random weights; a scale left in or divided
// twice would be off by 4,096).
TEST_F(TrainerTest, LossScalingLeavesTheStepUnchanged) {
  TrainConfig plain = Config();
  // SGD: its step is proportional to the gradient, so a scale left in would show in the
  // parameters (AdamW would hide it: it divides the gradient's scale out).
  plain.optimizer.type = "sgd";
  plain.optimizer.lr = 0.05;
  TrainConfig scaled = plain;
  scaled.loss_scale.enabled = true;
  auto a = Trainer::Create(*model_, forward_, *prompts_, data_, plain, "");
  auto b = Trainer::Create(*model_, forward_, *prompts_, data_, scaled, "");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE((*a)->loss_scaler().enabled());
  EXPECT_EQ((*b)->loss_scaler().scale(), 4096);
  for (int step = 0; step < 2; ++step) {
    StepStats sa = (*a)->ComputeGradients(0);
    StepStats sb = (*b)->ComputeGradients(0);
    EXPECT_EQ(sb.loss_scale, 4096);
    EXPECT_EQ(sa.loss_sum, sb.loss_sum);
    auto ga = (*a)->projector()->NamedParameters();
    auto gb = (*b)->projector()->NamedParameters();
    for (size_t i = 0; i < ga.size(); ++i) {
      EXPECT_LE(testing::RelError(gb[i].second.grad(), ga[i].second.grad()), 1e-4) << ga[i].first;
    }
    ASSERT_TRUE((*a)->ApplyGradients(&sa).ok());
    ASSERT_TRUE((*b)->ApplyGradients(&sb).ok());
    EXPECT_FALSE(sb.skipped);
  }
  std::vector<at::Tensor> pa = Params(**a), pb = Params(**b);
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_LE(testing::RelError(pb[i], pa[i]), 1e-6) << i;
}

// A projector that has gone non-finite (here: one weight set to inf) gives non-finite
// gradients: with loss scaling the update is skipped and the scale backs off until the
// run fails with a clear error; without it the step fails at once. Either way the
// projector is not touched.
TEST_F(TrainerTest, NonFiniteGradientsNeverReachTheProjector) {
  for (bool scaled : {false, true}) {
    TrainConfig c = Config();
    c.loss_scale.enabled = scaled;
    c.loss_scale.initial_scale = 4;
    c.loss_scale.min_scale = 1;
    auto t = Trainer::Create(*model_, forward_, *prompts_, data_, c, "");
    ASSERT_TRUE(t.ok());
    {
      at::NoGradGuard no_grad;
      (*t)->projector()->parameters()[0].view({-1})[0] = INFINITY;
    }
    const std::vector<at::Tensor> before = Params(**t);
    absl::Status failed;
    int steps = 0;
    while (failed.ok() && steps < 10) {
      StepStats s = (*t)->ComputeGradients(0);
      failed = (*t)->ApplyGradients(&s);
      if (failed.ok()) {
        EXPECT_TRUE(s.skipped);
        EXPECT_EQ(s.loss_scale, 4 >> steps);
      }
      ++steps;
    }
    // Unscaled: the first step fails; scaled: 4 -> 2 -> 1, the third overflow fails.
    EXPECT_EQ(steps, scaled ? 3 : 1);
    ASSERT_FALSE(failed.ok());
    EXPECT_NE(failed.message().find(scaled ? "overflow" : "not finite"), std::string::npos)
        << failed;
    const std::vector<at::Tensor> after = Params(**t);
    for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(at::equal(before[i], after[i])) << i;
  }
}

// The loss scale is part of the resumable state: a run resumed from a checkpoint
// continues with the scale it had, bit for bit.
TEST_F(TrainerTest, ResumeCarriesTheLossScale) {
  const std::string dir = testing::MakeTempDir("trainer");
  TrainConfig c = Config();
  c.loss_scale.enabled = true;
  c.loss_scale.growth_interval = 3;
  auto straight = Trainer::Create(*model_, forward_, *prompts_, data_, c, "");
  ASSERT_TRUE(straight.ok());
  while (!(*straight)->done()) ASSERT_TRUE((*straight)->TrainStep().ok());
  auto first = Trainer::Create(*model_, forward_, *prompts_, data_, c, "");
  ASSERT_TRUE(first.ok());
  for (int i = 0; i < 7; ++i) ASSERT_TRUE((*first)->TrainStep().ok());
  EXPECT_EQ((*first)->loss_scaler().scale(), 4096 * 4);  // grew after steps 3 and 6
  ASSERT_TRUE((*first)->SaveCheckpoint(dir + "/ckpt.safetensors").ok());
  auto second = Trainer::Create(*model_, forward_, *prompts_, data_, c, dir + "/ckpt.safetensors");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->loss_scaler().scale(), 4096 * 4);
  while (!(*second)->done()) ASSERT_TRUE((*second)->TrainStep().ok());
  EXPECT_EQ((*second)->loss_scaler().scale(), (*straight)->loss_scaler().scale());
  std::vector<at::Tensor> a = Params(**straight), b = Params(**second);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << i;
}

TEST_F(TrainerTest, BadInputsAreRefusedWithoutTouchingFiles) {
  TrainConfig c = Config();
  c.batch_size = 0;
  EXPECT_FALSE(Trainer::Create(*model_, forward_, *prompts_, data_, c, "").ok());
  c = Config();
  c.projector.output_dim = 4096;  // not the model's hidden size
  auto bad = Trainer::Create(*model_, forward_, *prompts_, data_, c, "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("4096"), std::string::npos) << bad.status();
  auto missing =
      Trainer::Create(*model_, forward_, *prompts_, data_, Config(), "/no/such/ckpt.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/no/such/ckpt.safetensors"), std::string::npos);
  // A corrupt checkpoint is reported, and left as it was.
  const std::string dir = testing::MakeTempDir("trainer");
  ASSERT_TRUE(WriteFileAtomic(dir + "/bad.safetensors", "garbage!garbage!").ok());
  EXPECT_FALSE(
      Trainer::Create(*model_, forward_, *prompts_, data_, Config(), dir + "/bad.safetensors")
          .ok());
  EXPECT_EQ(*ReadFile(dir + "/bad.safetensors"), "garbage!garbage!");
}

}  // namespace
}  // namespace llava

namespace llava {
namespace {

// The product's loop on the real pieces: the demo LM that setup builds, the real
// tokenizer and MNIST. A short run must lower the answer loss and answer far above
// chance (10%) on held-out test digits.
TEST(DemoLmTrainingTest, ShortRunLearnsToReadDigits) {
  const std::string dir = testing::SourceDir() + "/data/models/demo-lm";
  auto model = LoadLlama(dir, ModelOptions());
  ASSERT_TRUE(model.ok()) << model.status() << " (scripts/setup.sh builds the demo LM)";
  auto tok = Tokenizer::Load(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  PromptConfig pc;
  auto prompts = PromptBuilder::Create(*tok, pc);
  ASSERT_TRUE(prompts.ok());
  auto train = LoadMnistSplit(testing::SourceDir() + "/data/mnist", "train", 2000);
  ASSERT_TRUE(train.ok()) << train.status();
  auto test = LoadMnistSplit(testing::SourceDir() + "/data/mnist", "test", 200);
  ASSERT_TRUE(test.ok()) << test.status();

  TrainConfig c;
  c.model_spec = dir;
  c.projector.type = ProjectorType::kMlp2xGelu;
  c.projector.output_dim = (*model)->config.hidden_size;
  c.batch_size = 32;
  c.train_digits = 2000;
  c.optimizer.lr = 2e-3;
  c.seed = 1;
  auto trainer = Trainer::Create(**model, ForwardOptions(), *prompts, *train, c, "");
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  double first = 0, last = 0;
  int64_t steps = 0;
  while (!(*trainer)->done()) {
    auto step = (*trainer)->TrainStep();
    ASSERT_TRUE(step.ok()) << step.status();
    const StepStats& s = *step;
    if (steps < 5) first += s.loss() / 5;
    if ((*trainer)->total_steps() - steps <= 5) last += s.loss() / 5;
    ++steps;
  }
  EXPECT_EQ(steps, 63);
  std::cout << "answer loss " << first << " -> " << last << "\n";
  EXPECT_LT(last, first * 0.5);

  EvalReport report(pc.questions);
  EvalInputs in{model->get(), &(*trainer)->projector(), &*prompts, &*tok, &*test};
  ASSERT_TRUE(EvaluateRange(in, 0, test->size(), EvalConfig(), &report).ok());
  std::cout << "accuracy on 200 test digits " << report.Accuracy() << "\n";
  EXPECT_GT(report.Accuracy(), 0.4);
  // The shared-prefix path answers as the plain path does, in float32 and in bfloat16
  // (same dtype each), on a trained projector: answers whose logits are decided, unlike a
  // random LM's near-ties.
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    ModelOptions mo;
    mo.dtype = dtype;
    auto m = LoadLlama(dir, mo);
    ASSERT_TRUE(m.ok()) << m.status();
    EvalInputs ei{m->get(), &(*trainer)->projector(), &*prompts, &*tok, &*test};
    EvalConfig fast, plain;
    plain.reuse_prefix_kv = false;
    EvalReport a(pc.questions), b(pc.questions);
    ASSERT_TRUE(EvaluateRange(ei, 0, test->size(), fast, &a).ok());
    ASSERT_TRUE(EvaluateRange(ei, 0, test->size(), plain, &b).ok());
    int64_t same = 0;
    for (int64_t i = 0; i < a.NumSamples(); ++i)
      same += a.samples()[i].answer == b.samples()[i].answer;
    std::cout << c10::toString(dtype) << ": " << same << " of " << a.NumSamples()
              << " answers equal with and without the shared prefix\n";
    EXPECT_GE(same, a.NumSamples() * 99 / 100);
  }
}

}  // namespace
}  // namespace llava
