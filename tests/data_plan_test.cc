// The data plan: every sample once per epoch, deterministic from the seed, and ranks'
// shares that put together are exactly the single-process step.
#include "common/data_plan.h"

#include <gtest/gtest.h>

#include <set>

namespace llava {
namespace {

DataPlanConfig Config() {
  DataPlanConfig c;
  c.num_samples = 103;
  c.global_batch = 8;
  c.epochs = 3;
  c.seed = 42;
  c.num_questions = 3;
  c.num_answer_templates = 2;
  return c;
}

TEST(DataPlanTest, EachEpochVisitsEverySampleOnce) {
  DataPlan plan(Config());
  EXPECT_EQ(plan.steps_per_epoch(), 13);  // 12 full steps + one of 7
  EXPECT_EQ(plan.total_steps(), 39);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::multiset<int64_t> seen;
    for (int64_t s = epoch * 13; s < (epoch + 1) * 13; ++s) {
      for (const PlannedSample& p : plan.StepSamples(s)) seen.insert(p.index);
    }
    ASSERT_EQ(seen.size(), 103u);
    for (int64_t i = 0; i < 103; ++i) EXPECT_EQ(seen.count(i), 1u) << i;
  }
  EXPECT_EQ(plan.StepSamples(12).size(), 7u);
}

TEST(DataPlanTest, DeterministicAndSeedDependent) {
  DataPlan a(Config()), b(Config());
  DataPlanConfig other = Config();
  other.seed = 43;
  DataPlan c(other);
  bool differs = false;
  for (int64_t s = 0; s < a.total_steps(); ++s) {
    auto x = a.StepSamples(s), y = b.StepSamples(s), z = c.StepSamples(s);
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(x[i].index, y[i].index);
      EXPECT_EQ(x[i].question, y[i].question);
      EXPECT_EQ(x[i].answer_template, y[i].answer_template);
      differs |= x[i].index != z[i].index;
    }
  }
  EXPECT_TRUE(differs);
  // Epochs are shuffled differently.
  EXPECT_NE(a.StepSamples(0)[0].index * 1000 + a.StepSamples(0)[1].index,
            a.StepSamples(13)[0].index * 1000 + a.StepSamples(13)[1].index);
}

TEST(DataPlanTest, PhrasingsAreAllUsed) {
  DataPlan plan(Config());
  std::set<int64_t> questions, templates;
  for (int64_t s = 0; s < plan.total_steps(); ++s) {
    for (const PlannedSample& p : plan.StepSamples(s)) {
      questions.insert(p.question);
      templates.insert(p.answer_template);
    }
  }
  EXPECT_EQ(questions, (std::set<int64_t>{0, 1, 2}));
  EXPECT_EQ(templates, (std::set<int64_t>{0, 1}));
}

TEST(DataPlanTest, RankSharesConcatenateToTheStep) {
  DataPlan plan(Config());
  for (int64_t world : {1, 2, 3, 8}) {
    for (int64_t s : {0, 5, 12}) {
      std::vector<int64_t> joined;
      for (int64_t r = 0; r < world; ++r) {
        auto share = plan.RankSamples(s, r, world);
        for (const auto& p : share) joined.push_back(p.index);
      }
      std::vector<int64_t> whole;
      for (const auto& p : plan.StepSamples(s)) whole.push_back(p.index);
      EXPECT_EQ(joined, whole) << "world " << world << " step " << s;
    }
  }
}

TEST(DataPlanTest, NoShuffleKeepsOrderAndMaxStepsCaps) {
  DataPlanConfig c = Config();
  c.shuffle = false;
  c.max_steps = 5;
  DataPlan plan(c);
  EXPECT_EQ(plan.total_steps(), 5);
  auto first = plan.StepSamples(1);
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(first[i].index, 8 + static_cast<int64_t>(i));
}

}  // namespace
}  // namespace llava
