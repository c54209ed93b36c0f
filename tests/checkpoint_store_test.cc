// The coordinator's checkpoint store: verified, atomic, found by id or job, rescanned
// after a restart; bad checksums store nothing.
#include "coordinator/checkpoint_store.h"

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/train_checkpoint.h"
#include "test_util.h"

namespace llava {
namespace {

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
  EXPECT_TRUE(absl::IsNotFound((*store)->Find("train-000002").status()));

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
  auto bytes = SerializeTrainCheckpoint(projector, with_optimizer ? optimizer->get() : nullptr, "{}", "demo");
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
  EXPECT_NE(bad.status().message().find("train-000002/step-000001"), std::string::npos) << bad.status();
}

TEST(CheckpointStoreTest, WrongChecksumOrBadIdStoresNothing) {
  const std::string dir = testing::MakeTempDir("ckpt_store_bad");
  auto store = CheckpointStore::Open(dir);
  ASSERT_TRUE(store.ok());
  const std::string bytes = "payload";
  auto ok = (*store)->Put("train-000001", 1, false, bytes, Sha256Hex(bytes));
  ASSERT_TRUE(ok.ok());
  auto bad = (*store)->Put("train-000001", 1, false, "tampered", Sha256Hex(bytes));
  EXPECT_TRUE(absl::IsDataLoss(bad.status())) << bad.status();
  // The stored file is untouched.
  EXPECT_EQ(*(*store)->Read(*ok), bytes);
  EXPECT_TRUE(absl::IsInvalidArgument((*store)->Put("../evil", 1, false, bytes, Sha256Hex(bytes)).status()));
  // Damage on disk is detected when read.
  ASSERT_TRUE(WriteFileAtomic(dir + "/train-000001/step-000001.safetensors", "damaged").ok());
  EXPECT_TRUE(absl::IsDataLoss((*store)->Read(*ok).status()));
}

}  // namespace
}  // namespace llava
