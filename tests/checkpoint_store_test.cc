// The coordinator's checkpoint store: verified, atomic, found by id or job, rescanned
// after a restart; bad checksums store nothing; retention keeps the newest and the best
// scored within the quota, and never what is pinned.
#include "coordinator/checkpoint_store.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "common/file_util.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/train_checkpoint.h"
#include "test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::StatusIs;

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.FinishHex(), Sha256Hex("abc"));
}

TEST(CheckpointStoreTest, PutFindReadAndReopen) {
  const std::string dir = testing::MakeTempDir("ckpt_store");
  auto store = CheckpointStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string a = "first checkpoint bytes", b = std::string(3000, 'x');
  auto i1 = (*store)->Put("train-000001", 5, false, a, Sha256Hex(a));
  ASSERT_TRUE(i1.ok()) << i1.status();
  EXPECT_EQ(i1->checkpoint_id(), "train-000001/step-000005");
  auto i2 = (*store)->Put("train-000001", 10, true, b, Sha256Hex(b));
  ASSERT_TRUE(i2.ok());
  // A job id finds its latest checkpoint; an id finds itself.
  EXPECT_EQ((*store)->Find("train-000001")->step(), 10);
  EXPECT_EQ((*store)->Find("train-000001/step-000005")->step(), 5);
  EXPECT_EQ(*(*store)->Read(*i1), a);
  EXPECT_EQ(*ReadFile(dir + "/train-000001/step-000010.safetensors"), b);
  EXPECT_THAT((*store)->Find("train-000002"), StatusIs(absl::StatusCode::kNotFound));

  auto reopened = CheckpointStore::Open(dir);
  ASSERT_TRUE(reopened.ok());
  ASSERT_EQ((*reopened)->List("").size(), 2u);
  EXPECT_TRUE((*reopened)->Find("train-000001")->final());
}

std::string SmallCheckpoint(uint64_t seed, bool with_optimizer) {
  ProjectorConfig config;
  config.input_dim = 784;
  config.output_dim = 16;
  Projector projector(config, seed);
  auto optimizer = Optimizer::Create(OptimizerConfig(), projector->NamedParameters());
  LM_CHECK(optimizer.ok());
  auto bytes = SerializeTrainCheckpoint(projector, with_optimizer ? optimizer->get() : nullptr,
                                        "{}", "demo");
  LM_CHECK(bytes.ok());
  return *bytes;
}

TEST(CheckpointStoreTest, ProjectorOnlyCopiesAreDerivedOnceAndFollowAReplacedFile) {
  auto store = CheckpointStore::Open(testing::MakeTempDir("ckpt_slim"));
  ASSERT_TRUE(store.ok());
  const std::string full = SmallCheckpoint(1, true);
  auto info = (*store)->Put("train-000001", 5, false, full, Sha256Hex(full));
  ASSERT_TRUE(info.ok()) << info.status();
  auto slim = (*store)->ReadProjectorOnly(*info);
  ASSERT_TRUE(slim.ok()) << slim.status();
  EXPECT_EQ((*slim)->bytes, SmallCheckpoint(1, false));
  EXPECT_EQ((*slim)->sha256, Sha256Hex((*slim)->bytes));
  auto again = (*store)->ReadProjectorOnly(*info);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), slim->get());  // served from memory

  // A restarted attempt rewrites step 5: the copy follows the new file.
  const std::string full2 = SmallCheckpoint(2, true);
  auto info2 = (*store)->Put("train-000001", 5, false, full2, Sha256Hex(full2));
  ASSERT_TRUE(info2.ok());
  auto slim2 = (*store)->ReadProjectorOnly(*info2);
  ASSERT_TRUE(slim2.ok());
  EXPECT_EQ((*slim2)->bytes, SmallCheckpoint(2, false));

  // Bytes that are not a checkpoint: a clear error naming the file, nothing cached.
  auto junk = (*store)->Put("train-000002", 1, true, "junk", Sha256Hex("junk"));
  ASSERT_TRUE(junk.ok());
  auto bad = (*store)->ReadProjectorOnly(*junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train-000002/step-000001"), std::string::npos)
      << bad.status();
}

TEST(CheckpointStoreTest, WrongChecksumOrBadIdStoresNothing) {
  const std::string dir = testing::MakeTempDir("ckpt_store_bad");
  auto store = CheckpointStore::Open(dir);
  ASSERT_TRUE(store.ok());
  const std::string bytes = "payload";
  auto ok = (*store)->Put("train-000001", 1, false, bytes, Sha256Hex(bytes));
  ASSERT_TRUE(ok.ok());
  auto bad = (*store)->Put("train-000001", 1, false, "tampered", Sha256Hex(bytes));
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kDataLoss));
  // The stored file is untouched.
  EXPECT_EQ(*(*store)->Read(*ok), bytes);
  EXPECT_THAT((*store)->Put("../evil", 1, false, bytes, Sha256Hex(bytes)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Damage on disk is detected when read.
  ASSERT_TRUE(WriteFileAtomic(dir + "/train-000001/step-000001.safetensors", "damaged").ok());
  EXPECT_THAT((*store)->Read(*ok), StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace llava

namespace llava {
namespace {

std::vector<int64_t> Steps(const CheckpointStore& store, const std::string& job) {
  std::vector<int64_t> steps;
  for (const auto& info : store.List(job)) steps.push_back(info.step());
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::string StepBytes(int64_t step) { return "checkpoint at step " + std::to_string(step); }
std::string Sha(int64_t step) { return Sha256Hex(StepBytes(step)); }

absl::StatusOr<v1::CheckpointInfo> PutStep(CheckpointStore& store, const std::string& job,
                                           int64_t step) {
  return store.Put(job, step, false, StepBytes(step), Sha(step));
}

TEST(CheckpointRetentionTest, KeepsTheNewestAndTheBestScoredAndRemembersScores) {
  const std::string dir = testing::MakeTempDir("ckpt_retention");
  auto store = CheckpointStore::Open(dir);
  ASSERT_TRUE(store.ok());
  CheckpointStore& s = **store;
  const std::string job = "train-000001";
  s.SetRetention(job, Retention{2, 1});
  ASSERT_TRUE(PutStep(s, job, 1).ok());
  ASSERT_TRUE(PutStep(s, job, 2).ok());
  ASSERT_TRUE(s.RecordEval(CheckpointStore::MakeId(job, 1), Sha(1), "eval-000010", 0.9).ok());
  ASSERT_TRUE(s.RecordEval(CheckpointStore::MakeId(job, 2), Sha(2), "eval-000011", 0.5).ok());
  ASSERT_TRUE(PutStep(s, job, 3).ok());
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{1, 2, 3}));  // newest 3, 2; best 1
  ASSERT_TRUE(PutStep(s, job, 4).ok());
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{1, 3, 4}));  // 2 is neither
  // An eval of a file since rewritten (a restarted attempt redid step 3) scores nothing.
  EXPECT_THAT(
      s.RecordEval(CheckpointStore::MakeId(job, 3), Sha256Hex("step 3 before"), "eval-000014", 1.0),
      StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_FALSE(FileExists(dir + "/" + CheckpointStore::MakeId(job, 2) + ".safetensors"));
  // A better score moves "best" to step 4, which is also among the newest: step 1 goes.
  ASSERT_TRUE(s.RecordEval(CheckpointStore::MakeId(job, 4), Sha(4), "eval-000012", 0.95).ok());
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{3, 4}));
  EXPECT_THAT(s.RecordEval(CheckpointStore::MakeId(job, 1), Sha(1), "eval-000013", 1.0),
              StatusIs(absl::StatusCode::kNotFound));
  // The score lives in the sidecar: a restarted store still knows it.
  auto reopened = CheckpointStore::Open(dir);
  ASSERT_TRUE(reopened.ok());
  auto four = (*reopened)->Find(CheckpointStore::MakeId(job, 4));
  ASSERT_TRUE(four.ok());
  EXPECT_EQ(four->eval_job_id(), "eval-000012");
  EXPECT_DOUBLE_EQ(four->eval_accuracy(), 0.95);
}

TEST(CheckpointRetentionTest, PinnedCheckpointsOutliveRetentionUntilReleased) {
  CheckpointStoreOptions options;
  options.keep_last = 1;
  auto store = CheckpointStore::Open(testing::MakeTempDir("ckpt_pins"), options);
  ASSERT_TRUE(store.ok());
  CheckpointStore& s = **store;
  const std::string job = "train-000002";
  ASSERT_TRUE(PutStep(s, job, 1).ok());
  ASSERT_TRUE(s.Pin(CheckpointStore::MakeId(job, 1), "eval-000020").ok());
  ASSERT_TRUE(s.Pin(CheckpointStore::MakeId(job, 1), "train-000021/resume").ok());
  ASSERT_TRUE(PutStep(s, job, 2).ok());
  ASSERT_TRUE(PutStep(s, job, 3).ok());
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{1, 3}));  // 1 pinned, 2 pruned
  // A holder's new pin replaces its old one; step 1 still has another holder.
  ASSERT_TRUE(s.Pin(CheckpointStore::MakeId(job, 3), "eval-000020").ok());
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{1, 3}));
  // Unpin("train-000021") drops "train-000021/resume" too: nothing holds step 1 now.
  s.Unpin("train-000021");
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{3}));
  // A pruned checkpoint cannot be pinned: a reader learns it is gone, never half of it.
  EXPECT_THAT(s.Pin(CheckpointStore::MakeId(job, 1), "eval-000022"),
              StatusIs(absl::StatusCode::kNotFound));
  s.Unpin("eval-000020");
  ASSERT_TRUE(PutStep(s, job, 4).ok());
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{4}));
}

TEST(CheckpointRetentionTest, TheQuotaCountsTheBestKeptBesideTheNewest) {
  CheckpointStoreOptions options;
  options.max_job_bytes = 40;
  auto store = CheckpointStore::Open(testing::MakeTempDir("ckpt_best_quota"), options);
  ASSERT_TRUE(store.ok());
  CheckpointStore& s = **store;
  const std::string job = "train-000003";
  s.SetRetention(job, Retention{1, 1});
  ASSERT_TRUE(PutStep(s, job, 1).ok());  // 20 bytes
  ASSERT_TRUE(s.RecordEval(CheckpointStore::MakeId(job, 1), Sha(1), "eval-000030", 0.8).ok());
  ASSERT_TRUE(PutStep(s, job, 2).ok());  // 20 + the best 20 = 40
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{1, 2}));
  const std::string big = "checkpoint at step 3, larger";
  auto refused = s.Put(job, 3, false, big, Sha256Hex(big));  // 28 + 20 > 40
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Steps(s, job), (std::vector<int64_t>{1, 2}));
}

}  // namespace
}  // namespace llava
