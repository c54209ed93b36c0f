// The projector: shapes, normalization, torch-identical seeded initialization, config
// JSON, and its gradient against central finite differences in float64; conv_mlp's
// checkpoint read back by C++ and recomputed by a standard-library Python reader.
#include "common/projector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdlib>

#include "common/safetensors.h"
#include "common/train_checkpoint.h"
#include "tests/test_util.h"

namespace llava {
namespace {

using ::testing::HasSubstr;

ProjectorConfig Config(ProjectorType type, int64_t d, int64_t k = 1, int64_t hidden = 0) {
  ProjectorConfig c;
  c.type = type;
  c.output_dim = d;
  c.image_tokens = k;
  c.hidden_dim = hidden;
  return c;
}

at::Tensor Pixels(int64_t batch, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::rand({batch, 784}, gen, at::TensorOptions().dtype(at::kFloat));
}

TEST(ProjectorTest, LinearShapesAndNames) {
  Projector p(Config(ProjectorType::kLinear, 16, /*k=*/3), 1);
  auto params = p->NamedParameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "fc1.weight");
  EXPECT_EQ(params[0].second.sizes(), (std::vector<int64_t>{48, 784}));
  EXPECT_EQ(params[1].first, "fc1.bias");
  EXPECT_EQ(params[1].second.sizes(), (std::vector<int64_t>{48}));
  at::Tensor y = p->forward(Pixels(5, 2));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{5, 3, 16}));
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  // Token j of row b is output features [j*D, (j+1)*D) of the linear map.
  at::Tensor flat = at::linear((Pixels(5, 2) - 0.1307) / 0.3081, params[0].second,
                               params[1].second);  // [5, 48]
  EXPECT_TRUE(at::allclose(y[4][2], flat[4].slice(0, 32, 48), 1e-6, 1e-6));
}

TEST(ProjectorTest, MlpShapesMatchDeclaredOrder) {
  for (int64_t hidden : {0, 24}) {
    ProjectorConfig c = Config(ProjectorType::kMlp2xGelu, 16, /*k=*/2, hidden);
    Projector p(c, 1);
    auto params = p->NamedParameters();
    auto shapes = ProjectorParameterShapes(c);
    ASSERT_EQ(params.size(), 4u);
    ASSERT_EQ(shapes.size(), 4u);
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(params[i].first, shapes[i].first);
      EXPECT_EQ(params[i].second.sizes().vec(), shapes[i].second);
      EXPECT_EQ(params[i].second.scalar_type(), at::kFloat);
      EXPECT_TRUE(params[i].second.requires_grad());
    }
    const int64_t h = hidden == 0 ? 16 : hidden;
    EXPECT_EQ(shapes[0].second, (std::vector<int64_t>{h, 784}));
    EXPECT_EQ(shapes[2].second, (std::vector<int64_t>{32, h}));
    EXPECT_EQ(p->forward(Pixels(3, 4)).sizes(), (std::vector<int64_t>{3, 2, 16}));
  }
}

TEST(ProjectorTest, MlpComputesNormalizeLinearExactGeluLinear) {
  ProjectorConfig c = Config(ProjectorType::kMlp2xGelu, 8, 1, 12);
  c.input_mean = 0.25;
  c.input_std = 2.0;
  Projector p(c, 9);
  auto params = p->NamedParameters();
  at::Tensor px = Pixels(4, 5);
  // Reference in float64 with the erf form of GELU written out.
  auto d = [](const at::Tensor& t) { return t.detach().to(at::kDouble); };
  at::Tensor x = (d(px) - 0.25) / 2.0;
  at::Tensor h = at::linear(x, d(params[0].second), d(params[1].second));
  h = 0.5 * h * (1 + at::erf(h / std::sqrt(2.0)));
  at::Tensor want = at::linear(h, d(params[2].second), d(params[3].second)).view({4, 1, 8});
  EXPECT_LT(testing::RelError(p->forward(px), want), 1e-6);
}

TEST(ProjectorTest, NormalizationIsApplied) {
  Projector p(Config(ProjectorType::kLinear, 4), 3);
  auto params = p->NamedParameters();
  at::NoGradGuard no_grad;
  params[1].second.zero_();
  params[0].second.fill_(1.0);
  // All-zero pixels normalize to -mean/std each; the weight sums all 784 of them.
  at::Tensor y = p->forward(at::zeros({1, 784}));
  // float32 sums of 784 terms: relative 1e-5.
  EXPECT_NEAR(y[0][0][0].item<double>(), 784 * (-0.1307 / 0.3081), 784 * 0.43 * 1e-5);
  at::Tensor ones = p->forward(at::ones({1, 784}));
  EXPECT_NEAR(ones[0][0][1].item<double>(), 784 * ((1 - 0.1307) / 0.3081), 784 * 2.83 * 1e-5);
}

TEST(ProjectorTest, InitIsTorchDefaultLinearSeededLocally) {
  const uint64_t seed = 1234;
  ProjectorConfig c = Config(ProjectorType::kMlp2xGelu, 32, 2, 20);
  // Reference: torch's own nn::Linear layers built in order after manual_seed.
  torch::manual_seed(seed);
  torch::nn::Linear fc1(784, 20);
  torch::nn::Linear fc2(20, 64);
  at::Tensor global_next = at::rand({4});  // where the global generator stands now

  torch::manual_seed(seed);
  Projector p(c, seed);
  auto params = p->NamedParameters();
  EXPECT_TRUE(at::equal(params[0].second, fc1->weight));
  EXPECT_TRUE(at::equal(params[1].second, fc1->bias));
  EXPECT_TRUE(at::equal(params[2].second, fc2->weight));
  EXPECT_TRUE(at::equal(params[3].second, fc2->bias));
  // The projector drew from its own generator: the global one did not move.
  torch::manual_seed(seed);
  at::Tensor global_first = at::rand({4});
  torch::manual_seed(seed);
  Projector again(c, seed);
  EXPECT_TRUE(at::equal(at::rand({4}), global_first));
  EXPECT_FALSE(at::equal(global_first, global_next));
}

TEST(ProjectorTest, SameSeedSameWeightsDifferentSeedDifferent) {
  ProjectorConfig c = Config(ProjectorType::kLinear, 16, 2);
  Projector a(c, 7), b(c, 7), other(c, 8);
  auto pa = a->NamedParameters(), pb = b->NamedParameters(), po = other->NamedParameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(at::equal(pa[i].second, pb[i].second)) << pa[i].first;
    EXPECT_FALSE(at::equal(pa[i].second, po[i].second)) << pa[i].first;
  }
  // Bounds of torch's default init: U(+-1/sqrt(784)) for both weight and bias.
  EXPECT_LE(pa[0].second.abs().max().item<double>(), 1 / std::sqrt(784.0));
  EXPECT_GT(pa[0].second.abs().max().item<double>(), 0.9 / std::sqrt(784.0));
}

// d(loss)/d(param) from autograd vs central differences on 20 random coordinates per
// parameter, the module converted to float64.
void CheckGradient(const ProjectorConfig& config) {
  Projector p(config, 11);
  p->to(at::kDouble);
  at::Tensor px = Pixels(3, 12).to(at::kDouble);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(13);
  at::Tensor target =  // [3, k, D]
      at::randn({3, config.image_tokens, config.output_dim}, gen, at::kDouble);
  // A non-quadratic scalar so that second-order terms do not cancel trivially.
  auto loss = [&]() { return (p->forward(px) * target).sin().sum(); };
  for (auto& [name, param] : p->NamedParameters()) {
    if (param.grad().defined()) param.mutable_grad().zero_();
  }
  loss().backward();
  int checked = 0;
  for (auto& [name, param] : p->NamedParameters()) {
    at::Tensor flat = param.detach().view({-1});
    at::Tensor grad = param.grad().view({-1});
    at::Tensor idx = at::randint(flat.numel(), {20}, gen, at::kLong);
    at::Tensor analytic = at::empty({20}, at::kDouble), numeric = at::empty({20}, at::kDouble);
    const double h = 1e-6;
    at::NoGradGuard no_grad;
    for (int64_t i = 0; i < 20; ++i) {
      const int64_t j = idx[i].item<int64_t>();
      const double orig = flat[j].item<double>();
      flat[j] = orig + h;
      const double up = loss().item<double>();
      flat[j] = orig - h;
      const double down = loss().item<double>();
      flat[j] = orig;
      numeric[i] = (up - down) / (2 * h);
      analytic[i] = grad[j].item<double>();
    }
    EXPECT_LT(testing::RelError(analytic, numeric), 1e-4) << name;
    EXPECT_GT(numeric.abs().max().item<double>(), 1e-6) << name << ": gradient is all zero";
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(ProjectorParameterShapes(config).size()));
}

TEST(ProjectorTest, GradientMatchesFiniteDifferencesLinear) {
  CheckGradient(Config(ProjectorType::kLinear, 6, 2));
}

TEST(ProjectorTest, GradientMatchesFiniteDifferencesMlp) {
  CheckGradient(Config(ProjectorType::kMlp2xGelu, 6, 2, 10));
}

TEST(ProjectorTest, GradientMatchesFiniteDifferencesConvMlp) {
  CheckGradient(Config(ProjectorType::kConvMlp, 6, 2, 10));
}

TEST(ProjectorTest, ConvMlpShapesMatchDeclaredOrder) {
  for (int64_t k : {1, 3}) {
    ProjectorConfig c = Config(ProjectorType::kConvMlp, 16, k, 24);
    Projector p(c, 1);
    auto params = p->NamedParameters();
    auto shapes = ProjectorParameterShapes(c);
    ASSERT_EQ(params.size(), 8u);
    ASSERT_EQ(shapes.size(), 8u);
    const std::vector<std::string> names = {"conv1.weight", "conv1.bias", "conv2.weight",
                                            "conv2.bias",   "fc1.weight", "fc1.bias",
                                            "fc2.weight",   "fc2.bias"};
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(params[i].first, names[i]);
      EXPECT_EQ(shapes[i].first, names[i]);
      EXPECT_EQ(params[i].second.sizes().vec(), shapes[i].second) << names[i];
      EXPECT_TRUE(params[i].second.requires_grad());
    }
    EXPECT_EQ(shapes[0].second, (std::vector<int64_t>{32, 1, 3, 3}));
    EXPECT_EQ(shapes[2].second, (std::vector<int64_t>{64, 32, 3, 3}));
    EXPECT_EQ(shapes[4].second, (std::vector<int64_t>{24, 64 * 7 * 7}));
    EXPECT_EQ(shapes[6].second, (std::vector<int64_t>{16 * k, 24}));
    EXPECT_EQ(p->forward(Pixels(3, 4)).sizes(), (std::vector<int64_t>{3, k, 16}));
  }
}

// The weights are what torch's nn.Conv2d and nn.Linear layers draw after manual_seed, in
// order, and the forward is theirs: conv, GELU, 2x2 max pool twice, flatten, the MLP.
TEST(ProjectorTest, ConvMlpIsTorchsLayersInOrder) {
  const uint64_t seed = 99;
  ProjectorConfig c = Config(ProjectorType::kConvMlp, 8, 2, 12);
  torch::manual_seed(seed);
  torch::nn::Conv2d conv1(torch::nn::Conv2dOptions(1, 32, 3).padding(1));
  torch::nn::Conv2d conv2(torch::nn::Conv2dOptions(32, 64, 3).padding(1));
  torch::nn::Linear fc1(64 * 7 * 7, 12);
  torch::nn::Linear fc2(12, 16);
  Projector p(c, seed);
  auto params = p->NamedParameters();
  const at::Tensor want_params[] = {conv1->weight, conv1->bias, conv2->weight, conv2->bias,
                                    fc1->weight,   fc1->bias,   fc2->weight,   fc2->bias};
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::equal(params[i].second, want_params[i])) << params[i].first;
  }
  at::Tensor px = Pixels(5, 6);
  torch::NoGradGuard no_grad;
  namespace F = torch::nn::functional;
  at::Tensor x = ((px - 0.1307) / 0.3081).view({5, 1, 28, 28});
  x = F::max_pool2d(F::gelu(conv1(x)), F::MaxPool2dFuncOptions(2));
  x = F::max_pool2d(F::gelu(conv2(x)), F::MaxPool2dFuncOptions(2));
  at::Tensor want = fc2(F::gelu(fc1(x.flatten(1)))).view({5, 2, 8});
  EXPECT_LT(testing::RelError(p->forward(px), want), 1e-6);
}

TEST(ProjectorTest, ConvMlpNeedsASquareImageWithSideDivisibleBy4) {
  ProjectorConfig c = Config(ProjectorType::kConvMlp, 8);
  EXPECT_TRUE(c.Validate().ok());
  for (int64_t bad : {780, 900, 1}) {  // not square; side 30; side 1
    c.input_dim = bad;
    EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("square image")) << bad;
  }
  c.input_dim = 16 * 16;
  EXPECT_TRUE(c.Validate().ok());
  EXPECT_EQ(ProjectorParameterShapes(c)[4].second, (std::vector<int64_t>{8, 64 * 4 * 4}));
  auto json =
      ProjectorConfig::FromJson(R"({"type":"conv_mlp","output_dim":8,"hidden_dim":4})", "j");
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->type, ProjectorType::kConvMlp);
  EXPECT_EQ(*ProjectorConfig::FromJson(json->ToJson(), "again"), *json);
}

// A conv_mlp checkpoint is plain safetensors: it loads back bit for bit, and a reader
// with Python's standard library alone (tests/python/conv_projector_check.py) finds
// every tensor by its PyTorch name and recomputes the embeddings of two digits.
TEST(ProjectorTest, ConvMlpCheckpointRoundTripAndPythonReadsIt) {
  ProjectorConfig c = Config(ProjectorType::kConvMlp, 8, 2, 16);
  Projector p(c, 5);
  const std::string dir = testing::MakeTempDir("conv_checkpoint");
  const std::string path = dir + "/projector.safetensors";
  ASSERT_TRUE(SaveTrainCheckpoint(path, p, nullptr, "{}", "synthetic:tiny").ok());
  auto ckpt = LoadTrainCheckpoint(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->projector_config, c);
  auto restored = RestoreProjector(*ckpt, at::kCPU);
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto a = p->NamedParameters(), b = (*restored)->NamedParameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  }
  at::Tensor px = Pixels(2, 8);
  at::NoGradGuard no_grad;
  at::Tensor embeddings = p->forward(px);
  EXPECT_TRUE(at::equal((*restored)->forward(px), embeddings));
  ASSERT_TRUE(
      WriteSafetensors(dir + "/reference.safetensors",
                       {{"pixels", px.contiguous()}, {"embeddings", embeddings.contiguous()}})
          .ok());
  const std::string command = "/usr/bin/python3 " + testing::SourceDir() +
                              "/tests/python/conv_projector_check.py " + path + " " + dir +
                              "/reference.safetensors";
  const int rc = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << command;
}

TEST(ProjectorTest, ConfigJsonRoundTrip) {
  ProjectorConfig c = Config(ProjectorType::kMlp2xGelu, 4096, 4, 1024);
  c.input_mean = 0.5;
  auto back = ProjectorConfig::FromJson(c.ToJson(), "test");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, c);
  // Defaults fill the optional fields.
  auto minimal = ProjectorConfig::FromJson(R"({"type":"linear","output_dim":64})", "m");
  ASSERT_TRUE(minimal.ok()) << minimal.status();
  EXPECT_EQ(minimal->input_dim, 784);
  EXPECT_EQ(minimal->image_tokens, 1);
  EXPECT_DOUBLE_EQ(minimal->input_mean, 0.1307);
  EXPECT_DOUBLE_EQ(minimal->input_std, 0.3081);
}

TEST(ProjectorTest, ConfigJsonErrorsNameSourceAndField) {
  struct Case {
    const char* json;
    const char* want;
  };
  const Case cases[] = {
      {"{not json", "not valid JSON"},
      {"[1]", "must be a JSON object"},
      {R"({"output_dim":64})", "field 'type' is missing"},
      {R"({"type":"conv","output_dim":64})", "unknown projector type 'conv'"},
      {R"({"type":"linear"})", "field 'output_dim' is missing"},
      {R"({"type":"linear","output_dim":"64"})", "field 'output_dim' must be an integer"},
      {R"({"type":"linear","output_dim":64,"typo":1})", "field 'typo' is not a projector"},
      {R"({"type":"linear","output_dim":0})", "output_dim must be > 0"},
      {R"({"type":"linear","output_dim":8,"hidden_dim":4})", "only applies to mlp2x_gelu"},
      {R"({"type":"linear","output_dim":8,"input_std":0})", "input_std must be"},
      {R"({"type":"linear","output_dim":8,"image_tokens":0})", "image_tokens must be > 0"},
      {R"({"type":"linear","output_dim":8,"input_mean":"x"})", "'input_mean' must be a number"},
  };
  for (const Case& c : cases) {
    auto r = ProjectorConfig::FromJson(c.json, "ckpt.safetensors");
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("ckpt.safetensors")) << c.json;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want)) << c.json;
  }
}

TEST(ProjectorTest, ParseTypeAndMakeProjectorValidate) {
  EXPECT_EQ(*ParseProjectorType("linear"), ProjectorType::kLinear);
  EXPECT_EQ(*ParseProjectorType("mlp2x_gelu"), ProjectorType::kMlp2xGelu);
  EXPECT_EQ(*ParseProjectorType("conv_mlp"), ProjectorType::kConvMlp);
  EXPECT_STREQ(ProjectorTypeName(ProjectorType::kConvMlp), "conv_mlp");
  EXPECT_FALSE(ParseProjectorType("mlp").ok());
  auto bad = MakeProjector(Config(ProjectorType::kLinear, 0), 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("output_dim"));
  EXPECT_TRUE(MakeProjector(Config(ProjectorType::kLinear, 8), 1).ok());
}

}  // namespace
}  // namespace llava
