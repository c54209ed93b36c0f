// The optimizers against libtorch's own (torch::optim::AdamW / SGD) over many steps, the
// learning-rate schedules against hand-computed values, and state save/restore.
#include "common/optimizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "tests/test_util.h"

namespace llava {
namespace {

using ::testing::HasSubstr;

std::string Bytes(const at::Tensor& t) {
  at::Tensor c = t.detach().cpu().contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

// Two parameters (a matrix and a vector) and a loss whose gradients change every step.
struct Problem {
  at::Tensor w, b;
  explicit Problem(at::Device device = at::kCPU) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
    w = at::randn({7, 5}, gen, at::kFloat).to(device).requires_grad_(true);
    b = at::randn({7}, gen, at::kFloat).to(device).requires_grad_(true);
  }
  Problem(const Problem& other)
      : w(other.w.detach().clone().requires_grad_(true)),
        b(other.b.detach().clone().requires_grad_(true)) {}
  std::vector<std::pair<std::string, at::Tensor>> Named() { return {{"w", w}, {"b", b}}; }
  // Fresh gradients for step `step` (same for every copy of the problem).
  void Backward(int step) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(100 + step);
    at::Tensor x = at::randn({4, 5}, gen, at::kFloat).to(w.device());
    at::Tensor y = at::randn({4, 7}, gen, at::kFloat).to(w.device());
    at::Tensor loss = (at::linear(x, w, b) - y).pow(2).mean() + 0.1 * w.abs().sum();
    loss.backward();
  }
  void ZeroGrad() {
    for (at::Tensor* t : {&w, &b}) {
      if (t->grad().defined()) t->mutable_grad().zero_();
    }
  }
};

// The CPU, and the GPU where there is one: torch's kernels round differently per
// device, and the optimizer must match torch on each.
std::vector<at::Device> Devices() {
  std::vector<at::Device> out = {at::kCPU};
  if (at::hasCUDA()) out.emplace_back(at::kCUDA, 0);
  return out;
}

// The learning rate changes every step, as a schedule makes it.
double StepLr(int step) { return 1e-2 * (1.0 + 0.5 * std::sin(step)); }

// 200 steps of ours and of torch::optim::AdamW from the same start on the same gradients.
void CheckAdamWAgainstLibtorch(const at::Device& device, double wd) {
  SCOPED_TRACE(absl::StrCat(device.str(), " weight_decay ", wd));
  Problem mine(device), ref(mine);
  OptimizerConfig config;
  config.weight_decay = wd;
  config.beta2 = 0.99;
  auto opt = Optimizer::Create(config, mine.Named());
  ASSERT_TRUE(opt.ok()) << opt.status();
  torch::optim::AdamW torch_opt(
      std::vector<at::Tensor>{ref.w, ref.b},
      torch::optim::AdamWOptions(1.0).betas({0.9, 0.99}).eps(1e-8).weight_decay(wd));
  for (int step = 0; step < 200; ++step) {
    mine.ZeroGrad();
    ref.ZeroGrad();
    mine.Backward(step);
    ref.Backward(step);
    for (auto& group : torch_opt.param_groups()) group.options().set_lr(StepLr(step));
    (*opt)->Step(StepLr(step));
    torch_opt.step();
    ASSERT_EQ(Bytes(mine.w), Bytes(ref.w)) << "step " << step;
    ASSERT_EQ(Bytes(mine.b), Bytes(ref.b)) << "step " << step;
  }
  EXPECT_EQ((*opt)->step(), 200);
  auto state = (*opt)->StateTensors();
  ASSERT_EQ(state.size(), 5u);
  EXPECT_EQ(state[0].name, "w.exp_avg");
  EXPECT_EQ(state[1].name, "w.exp_avg_sq");
  EXPECT_EQ(state[2].name, "b.exp_avg");
  EXPECT_EQ(state[3].name, "b.exp_avg_sq");
  EXPECT_EQ(state[4].name, "step");
  EXPECT_EQ(state[4].tensor.dim(), 0);
  EXPECT_EQ(state[4].tensor.scalar_type(), at::kLong);
  EXPECT_EQ(state[4].tensor.item<int64_t>(), 200);
  // The state equals torch's too. torch keys it by TensorImpl (a string in 1.x, a
  // pointer in 2.x): find w's by rank.
  int matched = 0;
  for (auto& entry : torch_opt.state()) {
    auto& ts = static_cast<torch::optim::AdamWParamState&>(*entry.second);
    if (ts.exp_avg().dim() != 2) continue;
    EXPECT_EQ(Bytes(state[0].tensor), Bytes(ts.exp_avg()));
    EXPECT_EQ(Bytes(state[1].tensor), Bytes(ts.exp_avg_sq()));
    EXPECT_EQ(ts.step(), 200);
    ++matched;
  }
  EXPECT_EQ(matched, 1);
}

TEST(OptimizerTest, AdamWIsBitIdenticalToLibtorch) {
  for (const at::Device& device : Devices()) {
    for (double wd : {0.0, 0.01, 0.1}) CheckAdamWAgainstLibtorch(device, wd);
  }
}

TEST(OptimizerTest, AdamWFirstStepByHand) {
  // One scalar: after step 1, exp_avg = 0.1 g, exp_avg_sq = 0.001 g^2, so the update is
  // -lr * g / (|g| + eps') = -lr * sign(g) (up to eps), after decoupled decay.
  at::Tensor p = at::full({1}, 2.0, at::kFloat).requires_grad_(true);
  OptimizerConfig config;
  config.weight_decay = 0.5;
  auto opt = Optimizer::Create(config, {{"p", p}});
  ASSERT_TRUE(opt.ok());
  p.mutable_grad() = at::full({1}, -3.0, at::kFloat);
  (*opt)->Step(0.1);
  // 2 * (1 - 0.1 * 0.5) + 0.1 = 2.0
  EXPECT_NEAR(p.item<double>(), 2.0 * 0.95 + 0.1, 1e-6);
}

void CheckSgdAgainstLibtorch(const at::Device& device, double momentum, double wd) {
  SCOPED_TRACE(absl::StrCat(device.str(), " momentum ", momentum, " weight_decay ", wd));
  Problem mine(device), ref(mine);
  OptimizerConfig config;
  config.type = "sgd";
  config.momentum = momentum;
  config.weight_decay = wd;
  auto opt = Optimizer::Create(config, mine.Named());
  ASSERT_TRUE(opt.ok()) << opt.status();
  torch::optim::SGD torch_opt(std::vector<at::Tensor>{ref.w, ref.b},
                              torch::optim::SGDOptions(1.0).momentum(momentum).weight_decay(wd));
  for (int step = 0; step < 100; ++step) {
    mine.ZeroGrad();
    ref.ZeroGrad();
    mine.Backward(step);
    ref.Backward(step);
    for (auto& group : torch_opt.param_groups()) group.options().set_lr(StepLr(step));
    (*opt)->Step(StepLr(step));
    torch_opt.step();
    ASSERT_EQ(Bytes(mine.w), Bytes(ref.w)) << "step " << step;
    ASSERT_EQ(Bytes(mine.b), Bytes(ref.b)) << "step " << step;
  }
  auto state = (*opt)->StateTensors();
  EXPECT_EQ(state.size(), momentum == 0 ? 1u : 3u);
  if (momentum != 0) {
    EXPECT_EQ(state[0].name, "w.momentum_buffer");
  }
}

TEST(OptimizerTest, SgdIsBitIdenticalToLibtorch) {
  for (const at::Device& device : Devices()) {
    for (double momentum : {0.0, 0.9}) {
      for (double wd : {0.0, 0.01}) CheckSgdAgainstLibtorch(device, momentum, wd);
    }
  }
}

TEST(OptimizerTest, SkipsParametersWithoutGradient) {
  Problem prob;
  at::Tensor frozen_before = prob.b.detach().clone();
  auto opt = Optimizer::Create(OptimizerConfig(), prob.Named());
  ASSERT_TRUE(opt.ok());
  at::Tensor w_before = prob.w.detach().clone();
  prob.w.mutable_grad() = at::ones_like(prob.w);
  (*opt)->Step(0.1);
  EXPECT_TRUE(at::equal(prob.b, frozen_before));
  EXPECT_FALSE(at::equal(prob.w, w_before));
  (*opt)->ZeroGrad();
  EXPECT_EQ(prob.w.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(prob.b.grad().defined());
}

TEST(OptimizerTest, StateRestoreContinuesIdentically) {
  for (const char* type : {"adamw", "sgd"}) {
    OptimizerConfig config;
    config.type = type;
    config.momentum = 0.9;
    Problem straight;
    auto a = Optimizer::Create(config, straight.Named());
    ASSERT_TRUE(a.ok());
    for (int step = 0; step < 10; ++step) {
      (*a)->ZeroGrad();
      straight.Backward(step);
      (*a)->Step(StepLr(step));
      if (step == 4) {
        // Snapshot mid-way: copy parameters and state, restore into a fresh optimizer.
        Problem resumed(straight);
        std::map<std::string, at::Tensor> state;
        for (const NamedTensor& t : (*a)->StateTensors()) state[t.name] = t.tensor.clone();
        auto b = Optimizer::Create(config, resumed.Named());
        ASSERT_TRUE(b.ok());
        ASSERT_TRUE((*b)->LoadState(state).ok());
        EXPECT_EQ((*b)->step(), 5);
        for (int s = 5; s < 10; ++s) {
          resumed.ZeroGrad();
          resumed.Backward(s);
          (*b)->Step(StepLr(s));
        }
        // Finish the straight run below, then compare.
        for (int s = 5; s < 10; ++s) {
          (*a)->ZeroGrad();
          straight.Backward(s);
          (*a)->Step(StepLr(s));
        }
        EXPECT_EQ(Bytes(resumed.w), Bytes(straight.w)) << type;
        EXPECT_EQ(Bytes(resumed.b), Bytes(straight.b)) << type;
        break;
      }
    }
  }
}

TEST(OptimizerTest, LoadStateRefusesMismatches) {
  Problem prob;
  auto opt = Optimizer::Create(OptimizerConfig(), prob.Named());
  ASSERT_TRUE(opt.ok());
  auto good = [&]() {
    std::map<std::string, at::Tensor> s;
    for (const NamedTensor& t : (*opt)->StateTensors()) s[t.name] = t.tensor.clone() + 1;
    s["step"] = at::scalar_tensor(int64_t{3}, at::kLong);
    return s;
  };
  struct Case {
    std::function<void(std::map<std::string, at::Tensor>&)> edit;
    const char* want;
  };
  const Case cases[] = {
      {[](auto& s) { s.erase("w.exp_avg_sq"); }, "'w.exp_avg_sq' is missing"},
      {[](auto& s) { s.erase("step"); }, "'step' is missing"},
      {[](auto& s) {
         s["w.exp_avg"] = at::zeros({5, 7});
       },
       "shape [5, 7], expected [7, 5]"},
      {[](auto& s) { s["b.exp_avg"] = at::zeros({7}, at::kDouble); }, "dtype Double"},
      {[](auto& s) {
         s["w.momentum_buffer"] = at::zeros({7, 5});
       },
       "'w.momentum_buffer': unexpected"},
      {[](auto& s) { s["step"] = at::scalar_tensor(int64_t{-1}, at::kLong); }, "negative step"},
      {[](auto& s) { s["step"] = at::zeros({1}, at::kLong); }, "'step': shape [1]"},
  };
  for (const Case& c : cases) {
    auto state = good();
    c.edit(state);
    absl::Status st = (*opt)->LoadState(state);
    ASSERT_FALSE(st.ok()) << c.want;
    EXPECT_THAT(std::string(st.message()), HasSubstr(c.want));
    // Nothing was loaded.
    EXPECT_EQ((*opt)->step(), 0);
    EXPECT_EQ((*opt)->StateTensors()[0].tensor.abs().sum().item<double>(), 0.0) << c.want;
  }
  ASSERT_TRUE((*opt)->LoadState(good()).ok());
  EXPECT_EQ((*opt)->step(), 3);
  EXPECT_EQ((*opt)->StateTensors()[0].tensor.min().item<double>(), 1.0);
}

TEST(OptimizerTest, CreateRefusesBadInput) {
  Problem prob;
  OptimizerConfig bad_type;
  bad_type.type = "adam";
  EXPECT_THAT(std::string(Optimizer::Create(bad_type, prob.Named()).status().message()),
              HasSubstr("'adam' is unknown"));
  OptimizerConfig bad_beta;
  bad_beta.beta2 = 1.0;
  EXPECT_THAT(std::string(bad_beta.Validate().message()), HasSubstr("beta2"));
  OptimizerConfig bad_lr;
  bad_lr.lr = -1;
  EXPECT_THAT(std::string(bad_lr.Validate().message()), HasSubstr("lr"));
  OptimizerConfig bad_momentum;
  bad_momentum.momentum = 1.5;
  EXPECT_THAT(std::string(bad_momentum.Validate().message()), HasSubstr("momentum"));
  auto dup = Optimizer::Create(OptimizerConfig(), {{"w", prob.w}, {"w", prob.b}});
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("'w': duplicate"));
  auto reserved = Optimizer::Create(OptimizerConfig(), {{"step", prob.w}});
  EXPECT_FALSE(reserved.ok());
  auto frozen = Optimizer::Create(OptimizerConfig(), {{"x", at::zeros({2})}});
  EXPECT_THAT(std::string(frozen.status().message()), HasSubstr("not a leaf requiring grad"));
  EXPECT_FALSE(Optimizer::Create(OptimizerConfig(), {}).ok());
  // Defaults are torch.optim.AdamW's.
  OptimizerConfig d;
  EXPECT_EQ(d.type, "adamw");
  EXPECT_DOUBLE_EQ(d.lr, 1e-3);
  EXPECT_DOUBLE_EQ(d.weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(d.beta1, 0.9);
  EXPECT_DOUBLE_EQ(d.beta2, 0.999);
  EXPECT_DOUBLE_EQ(d.eps, 1e-8);
}

// ---------------------------------------------------------------------------- schedules

TEST(ScheduleTest, ConstantWithAndWithoutWarmup) {
  OptimizerConfig opt;
  opt.lr = 2e-3;
  ScheduleConfig constant;
  EXPECT_DOUBLE_EQ(LearningRate(opt, constant, 0, 100), 2e-3);
  EXPECT_DOUBLE_EQ(LearningRate(opt, constant, 99, 100), 2e-3);
  constant.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(LearningRate(opt, constant, 0, 100), 0.0);
  EXPECT_DOUBLE_EQ(LearningRate(opt, constant, 1, 100), 0.5e-3);
  EXPECT_DOUBLE_EQ(LearningRate(opt, constant, 4, 100), 2e-3);
  EXPECT_DOUBLE_EQ(LearningRate(opt, constant, 50, 100), 2e-3);
}

TEST(ScheduleTest, CosineWithWarmupMatchesHuggingFace) {
  OptimizerConfig opt;
  opt.lr = 1e-3;
  ScheduleConfig cosine;
  cosine.type = "cosine";
  cosine.warmup_steps = 10;
  const int64_t total = 110;  // 100 decay steps
  // Warmup: lr * step / warmup, starting at 0 (HF's first step has lr 0).
  EXPECT_DOUBLE_EQ(LearningRate(opt, cosine, 0, total), 0.0);
  EXPECT_DOUBLE_EQ(LearningRate(opt, cosine, 5, total), 0.5e-3);
  EXPECT_DOUBLE_EQ(LearningRate(opt, cosine, 9, total), 0.9e-3);
  // End of warmup: the peak.
  EXPECT_DOUBLE_EQ(LearningRate(opt, cosine, 10, total), 1e-3);
  // progress 0.25: 0.5 * (1 + cos(pi/4)) = 0.853553390593...
  EXPECT_NEAR(LearningRate(opt, cosine, 35, total), 1e-3 * 0.8535533905932737, 1e-15);
  // Mid-decay: half.
  EXPECT_NEAR(LearningRate(opt, cosine, 60, total), 0.5e-3, 1e-15);
  // Last step (progress 0.99): 0.5 * (1 + cos(0.99 pi)) = 2.4671981713419e-4 (times lr).
  EXPECT_NEAR(LearningRate(opt, cosine, 109, total), 1e-3 * 2.467198171342e-4, 1e-15);
  // The end and past it: 0.
  EXPECT_NEAR(LearningRate(opt, cosine, 110, total), 0.0, 1e-18);
  EXPECT_NEAR(LearningRate(opt, cosine, 150, total), 0.0, 1e-18);
}

TEST(ScheduleTest, WarmupRatioRoundsUpAsHuggingFace) {
  OptimizerConfig opt;
  opt.lr = 1.0;
  ScheduleConfig s;
  s.type = "cosine";
  s.warmup_ratio = 0.03;
  EXPECT_EQ(s.WarmupSteps(1000), 30);
  EXPECT_EQ(s.WarmupSteps(1001), 31);  // ceil(30.03)
  EXPECT_DOUBLE_EQ(LearningRate(opt, s, 15, 1000), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(opt, s, 30, 1000), 1.0);
  s.warmup_steps = 5;  // wins over the ratio
  EXPECT_EQ(s.WarmupSteps(1000), 5);
  // No warmup: cosine from the first step.
  ScheduleConfig plain;
  plain.type = "cosine";
  EXPECT_DOUBLE_EQ(LearningRate(opt, plain, 0, 4), 1.0);
  EXPECT_NEAR(LearningRate(opt, plain, 2, 4), 0.5, 1e-15);
}

TEST(ScheduleTest, ValidateRefusesBadSchedules) {
  ScheduleConfig s;
  s.type = "linear";
  EXPECT_THAT(std::string(s.Validate().message()), HasSubstr("'linear' is unknown"));
  s.type = "cosine";
  s.warmup_steps = -1;
  EXPECT_THAT(std::string(s.Validate().message()), HasSubstr("warmup_steps"));
  s.warmup_steps = 0;
  s.warmup_ratio = 1.5;
  EXPECT_THAT(std::string(s.Validate().message()), HasSubstr("warmup_ratio"));
  s.warmup_ratio = 0.1;
  EXPECT_TRUE(s.Validate().ok());
}

}  // namespace
}  // namespace llava
