// The coordinator's rendezvous store (coordinator/rendezvous_store.h): write-once keys,
// waits that end when the key is set or at their deadline, attempts' prefixes (scopes)
// erased at the end of an attempt without touching another's, the store's limits, and
// shutdown. (Per-attempt quotas: job_scheduler_test's RendezvousStoreTest.)
#include "coordinator/rendezvous_store.h"

#include <gtest/gtest.h>

#include <thread>

namespace llava {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

TEST(RendezvousStoreWaitTest, GetWaitsUntilAnotherThreadSetsTheKey) {
  RendezvousStore store;
  const auto start = Clock::now();
  std::thread writer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE(store.Set("train-000001/attempt-1/rank-0", "10.0.0.1:4000").ok());
  });
  auto got = store.Get("train-000001/attempt-1/rank-0", std::chrono::seconds(20));
  writer.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "10.0.0.1:4000");
  EXPECT_GE(Clock::now() - start, milliseconds(90));
  // A key already set answers at once, however short the wait.
  got = store.Get("train-000001/attempt-1/rank-0", milliseconds(0));
  ASSERT_TRUE(got.ok()) << got.status();
}

TEST(RendezvousStoreWaitTest, GetEndsDeadlineExceededAtItsWaitNamingTheKey) {
  RendezvousStore store;
  const auto start = Clock::now();
  auto got = store.Get("train-000001/attempt-1/rank-3", milliseconds(150));
  const auto waited = Clock::now() - start;
  EXPECT_TRUE(absl::IsDeadlineExceeded(got.status())) << got.status();
  EXPECT_NE(got.status().message().find("rank-3"), std::string::npos) << got.status();
  EXPECT_GE(waited, milliseconds(150));
  EXPECT_LT(waited, std::chrono::seconds(5));
}

TEST(RendezvousStoreTest, KeysAreWriteOnce) {
  RendezvousStore store;
  ASSERT_TRUE(store.Set("j/attempt-1/nccl-id", "first").ok());
  absl::Status second = store.Set("j/attempt-1/nccl-id", "second");
  EXPECT_TRUE(absl::IsAlreadyExists(second)) << second;
  EXPECT_EQ(*store.Get("j/attempt-1/nccl-id", milliseconds(0)), "first");
  EXPECT_TRUE(absl::IsInvalidArgument(store.Set("", "x")));
}

TEST(RendezvousStoreTest, ScopeIsTheKeyUpToItsSecondSlash) {
  EXPECT_EQ(RendezvousStore::ScopeOf("train-000001/attempt-2/rank-0"), "train-000001/attempt-2/");
  EXPECT_EQ(RendezvousStore::ScopeOf("train-000001/attempt-2/a/b"), "train-000001/attempt-2/");
  EXPECT_EQ(RendezvousStore::ScopeOf("train-000001/attempt-2"), "train-000001/attempt-2");
  EXPECT_EQ(RendezvousStore::ScopeOf("lonely"), "lonely");
}

// An attempt's keys go when it ends; another attempt of the same job, or another job, keeps
// its own. A rank still waiting on the ended attempt waits on (to its deadline): its key
// can only come from a new writer.
TEST(RendezvousStoreTest, ErasingAnAttemptsPrefixLeavesEveryOtherAttemptsKeys) {
  RendezvousStore store;
  ASSERT_TRUE(store.Set("train-000001/attempt-1/a", "1").ok());
  ASSERT_TRUE(store.Set("train-000001/attempt-1/b", "1").ok());
  ASSERT_TRUE(store.Set("train-000001/attempt-10/a", "10").ok());
  ASSERT_TRUE(store.Set("train-000002/attempt-1/a", "other job").ok());
  const int64_t other_bytes =
      static_cast<int64_t>(std::string("train-000001/attempt-10/a").size() + 2 +
                           std::string("train-000002/attempt-1/a").size() + 9);

  std::thread eraser([&] {
    std::this_thread::sleep_for(milliseconds(50));
    store.ErasePrefix("train-000001/attempt-1/");
  });
  auto waiting = store.Get("train-000001/attempt-1/c", milliseconds(300));
  eraser.join();
  EXPECT_TRUE(absl::IsDeadlineExceeded(waiting.status())) << waiting.status();

  EXPECT_EQ(store.size(), 2u);
  EXPECT_EQ(store.bytes(), other_bytes);
  EXPECT_TRUE(
      absl::IsDeadlineExceeded(store.Get("train-000001/attempt-1/a", milliseconds(0)).status()));
  EXPECT_EQ(*store.Get("train-000001/attempt-10/a", milliseconds(0)), "10");
  EXPECT_EQ(*store.Get("train-000002/attempt-1/a", milliseconds(0)), "other job");
  // The erased key may be written again (by a writer of a new group under that prefix).
  EXPECT_TRUE(store.Set("train-000001/attempt-1/a", "again").ok());
}

TEST(RendezvousStoreTest, TheStoresLimitsRefuseWhatWouldGrowItWithoutEnd) {
  RendezvousStore::Limits limits;
  limits.max_keys = 3;
  limits.max_value_bytes = 100;
  limits.max_key_bytes = 32;
  limits.max_total_bytes = 150;
  RendezvousStore store(limits);
  EXPECT_TRUE(absl::IsInvalidArgument(store.Set("j/attempt-1/big", std::string(101, 'x'))));
  EXPECT_TRUE(absl::IsInvalidArgument(store.Set(std::string(33, 'k'), "")));
  ASSERT_TRUE(store.Set("a/attempt-1/x", std::string(100, 'x')).ok());
  absl::Status over = store.Set("b/attempt-1/x", std::string(50, 'x'));
  EXPECT_TRUE(absl::IsResourceExhausted(over)) << over;  // total bytes
  ASSERT_TRUE(store.Set("b/attempt-1/x", "").ok());
  ASSERT_TRUE(store.Set("c/attempt-1/x", "").ok());
  over = store.Set("d/attempt-1/x", "");
  EXPECT_TRUE(absl::IsResourceExhausted(over)) << over;  // keys
  store.ErasePrefix("a/");
  EXPECT_TRUE(store.Set("d/attempt-1/x", std::string(100, 'x')).ok());
}

TEST(RendezvousStoreTest, ShutdownRefusesEveryLaterGetEvenOfASetKey) {
  RendezvousStore store;
  ASSERT_TRUE(store.Set("j/attempt-1/a", "v").ok());
  store.Shutdown();
  EXPECT_TRUE(absl::IsUnavailable(store.Get("j/attempt-1/a", milliseconds(0)).status()));
  const auto start = Clock::now();
  EXPECT_TRUE(absl::IsUnavailable(store.Get("j/attempt-1/b", std::chrono::hours(1)).status()));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace llava
