// `llava-mnist train` end to end (a tiny synthetic LM on the CPU): its TensorBoard files
// in <out_dir>/tb hold every train tag at every step of loss.csv with the same values,
// the eval tags at the last step, and after a resumed run a restart marker that makes the
// redone steps replace the first run's.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "common/file_util.h"
#include "common/loss_curve.h"
#include "launch/process.h"
#include "tests/tb_test_util.h"
#include "tests/test_util.h"

namespace llava {
namespace {

int RunTrain(const std::string& out_dir, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {testing::BinaryPath(),
                                   "train",
                                   "--model=synthetic:tiny",
                                   "--tokenizer=" + testing::TokenizerPath(),
                                   "--data_dir=" + testing::SourceDir() + "/data/mnist",
                                   "--device=cpu",
                                   "--out_dir=" + out_dir,
                                   "--train_digits=12",
                                   "--batch_size=2",
                                   "--checkpoint_every=3",
                                   "--eval_digits=5",
                                   "--max_new_tokens=4",
                                   "--eval_questions=What digit is this?|Name the digit."};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto child = ChildProcess::Spawn(argv, out_dir + ".log");
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (child->Running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (child->Running()) child->Stop(std::chrono::milliseconds(1000));
  return child->exit_status();
}

TEST(TensorBoardRunTest, TrainWritesEveryTagAtEveryStep) {
  const std::string out = testing::MakeTempDir("tb_train") + "/run";
  ASSERT_EQ(RunTrain(out, {}), 0) << "see " << out << ".log";
  auto curve = LossCurve::ReadCsv(out + "/loss.csv");
  ASSERT_TRUE(curve.ok()) << curve.status();
  ASSERT_EQ(curve->points().size(), 6u);  // 12 digits, batch 2

  auto series = testing::ScalarSeries(testing::ReadEventsDir(out + "/tb"));
  std::set<std::string> tags;
  for (const auto& [tag, s] : series) tags.insert(tag);
  EXPECT_EQ(tags, (std::set<std::string>{
                      "train/loss", "train/learning_rate", "train/samples_per_second",
                      "train/grad_norm", "eval/accuracy", "eval/question/What digit is this?",
                      "eval/question/Name the digit.", "eval/class/0", "eval/class/1",
                      "eval/class/2", "eval/class/3", "eval/class/4", "eval/class/5",
                      "eval/class/6", "eval/class/7", "eval/class/8", "eval/class/9"}));
  for (const char* tag :
       {"train/loss", "train/learning_rate", "train/samples_per_second", "train/grad_norm"}) {
    ASSERT_EQ(series[tag].size(), 6u) << tag;
  }
  for (const LossPoint& p : curve->points()) {
    ASSERT_TRUE(series["train/loss"].count(p.step)) << p.step;
    EXPECT_NEAR(series["train/loss"][p.step], p.loss, 1e-5 * std::max(1.0, std::abs(p.loss)))
        << p.step;
    EXPECT_NEAR(series["train/learning_rate"][p.step], p.lr, 1e-9) << p.step;
    EXPECT_GT(series["train/grad_norm"][p.step], 0.0f) << p.step;
  }
  ASSERT_EQ(series["eval/accuracy"].size(), 1u);
  EXPECT_EQ(series["eval/accuracy"].begin()->first, 6);
  auto report = ReadFile(out + "/eval_report.json");
  ASSERT_TRUE(report.ok());

  // Resume from the checkpoint of step 3: a second file whose restart marker at step 4
  // makes its steps 4..6 replace the first run's.
  ASSERT_EQ(RunTrain(out, {"--resume=" + out + "/checkpoint-3.safetensors", "--eval_after=false"}),
            0)
      << "see " << out << ".log";
  const auto events = testing::ReadEventsDir(out + "/tb");
  EXPECT_EQ(ListDir(out + "/tb").size(), 2u);
  int starts = 0;
  for (const auto& e : events) starts += e.has_session_log() && e.step() == 4 ? 1 : 0;
  EXPECT_EQ(starts, 1);
  auto resumed = LossCurve::ReadCsv(out + "/loss.csv");  // the second run's steps 4..6
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_EQ(resumed->points().size(), 3u);
  auto after = testing::ScalarSeries(events);
  EXPECT_EQ(after["train/loss"].size(), 6u);
  for (const LossPoint& p : resumed->points()) {
    EXPECT_NEAR(after["train/loss"][p.step], p.loss, 1e-5 * std::max(1.0, std::abs(p.loss)))
        << p.step;
  }
  // The eval of the first run's step 6 was redone away (no eval after the second run).
  EXPECT_TRUE(after["eval/accuracy"].empty());
}

}  // namespace
}  // namespace llava
