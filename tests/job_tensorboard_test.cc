// The coordinator's per-job TensorBoard files: steps as the scheduler accepts them, a
// restart marker where an attempt resumed, eval tags at the evaluated checkpoint's step in
// its training job's directory, and a bounded number of open files.
#include "coordinator/job_tensorboard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "common/file_util.h"
#include "tests/tb_test_util.h"
#include "tests/test_util.h"

namespace llava {
namespace {

using ::testing::ElementsAre;

std::vector<v1::StepMetrics> Steps(int64_t from, int64_t to) {
  std::vector<v1::StepMetrics> out;
  for (int64_t s = from; s <= to; ++s) {
    v1::StepMetrics m;
    m.set_step(s);
    m.set_loss(1.0 / s);
    m.set_lr(1e-3);
    m.set_samples_per_s(100);
    m.set_grad_norm(0.5);
    out.push_back(m);
  }
  return out;
}

std::map<int64_t, float> Series(const std::vector<tensorboard::Event>& events,
                                const std::string& tag) {
  return testing::ScalarSeries(events)[tag];
}

TEST(JobTensorBoardTest, StepsRestartAndEval) {
  const std::string root = testing::MakeTempDir("job_tb");
  JobTensorBoard tb(root);
  tb.OnSteps("train-000001", 1, 0, Steps(1, 3));
  tb.OnSteps("train-000001", 1, 0, Steps(4, 7));
  // Attempt 2 resumed from the checkpoint of step 5: steps 6 and 7 are redone.
  std::vector<v1::StepMetrics> redo = Steps(6, 9);
  for (auto& m : redo) m.set_loss(2.0);
  tb.OnSteps("train-000001", 2, 5, redo);
  EvalReport report({"What digit is this?"});
  report.Add({0, 0, 4, "The digit is 4.", 4});
  report.Add({1, 0, 7, "The digit is 1.", 1});
  tb.OnEval("train-000001/step-000009", report);
  tb.OnEval("nonsense", report);  // logged, nothing written

  EXPECT_THAT(ListDir(root), ElementsAre("train-000001"));
  const std::vector<tensorboard::Event> events = testing::ReadEventsDir(root + "/train-000001");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  int starts = 0;
  for (const auto& e : events) {
    if (e.has_session_log()) {
      ++starts;
      EXPECT_EQ(e.step(), 6);
      EXPECT_EQ(e.session_log().checkpoint_path(), "train-000001/step-5");
    }
  }
  EXPECT_EQ(starts, 1);
  const auto loss = Series(events, "train/loss");
  ASSERT_EQ(loss.size(), 9u);
  EXPECT_FLOAT_EQ(loss.at(5), 0.2f);
  EXPECT_FLOAT_EQ(loss.at(6), 2.0f);
  EXPECT_FLOAT_EQ(loss.at(9), 2.0f);
  EXPECT_EQ(Series(events, "train/grad_norm").size(), 9u);
  EXPECT_TRUE(Series(events, "train/loss_scale").empty());
  const auto accuracy = Series(events, "eval/accuracy");
  ASSERT_EQ(accuracy.size(), 1u);
  EXPECT_FLOAT_EQ(accuracy.at(9), 0.5f);
  EXPECT_FLOAT_EQ(Series(events, "eval/question/What digit is this?").at(9), 0.5f);
  EXPECT_FLOAT_EQ(Series(events, "eval/class/4").at(9), 1.0f);
  EXPECT_FLOAT_EQ(Series(events, "eval/class/7").at(9), 0.0f);
}

TEST(JobTensorBoardTest, BoundedOpenFilesReopenWithoutARestart) {
  const std::string root = testing::MakeTempDir("job_tb_lru");
  JobTensorBoard tb(root, /*max_open=*/1);
  tb.OnSteps("a", 1, 0, Steps(1, 2));
  tb.OnSteps("b", 1, 0, Steps(1, 2));  // closes a's file
  tb.OnSteps("a", 1, 0, Steps(3, 4));  // a new file for a, same attempt: no restart marker
  EXPECT_EQ(ListDir(root + "/a").size(), 2u);
  const auto events = testing::ReadEventsDir(root + "/a");
  for (const auto& e : events) EXPECT_FALSE(e.has_session_log());
  EXPECT_EQ(Series(events, "train/loss").size(), 4u);
}

TEST(JobTensorBoardTest, UnwritableRootFailsQuietly) {
  JobTensorBoard tb("/proc/llava-no-such-dir");
  tb.OnSteps("train-000001", 1, 0, Steps(1, 2));  // logged once; the job goes on
  tb.OnSteps("train-000001", 1, 0, Steps(3, 4));
  SUCCEED();
}

}  // namespace
}  // namespace llava
