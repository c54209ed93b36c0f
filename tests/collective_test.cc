// Gloo collectives in one process: ranks on threads meet through an in-memory
// rendezvous store, sum exactly, and a missing peer fails within the timeout instead of
// hanging. (NCCL needs GPUs: it is exercised by the GPU runs in bench/RESULTS.md.)
#include "worker/collective.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "coordinator/rendezvous_store.h"

namespace llava {
namespace {

class InMemoryStore : public RendezvousClient {
 public:
  absl::Status Set(const std::string& key, const std::string& value) override {
    return store_.Set(key, value);
  }
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds wait) override {
    return store_.Get(key, wait);
  }

 private:
  RendezvousStore store_;
};

CollectiveOptions Options(int64_t rank, int64_t world, std::chrono::milliseconds timeout) {
  CollectiveOptions o;
  o.engine = "gloo";
  o.rank = rank;
  o.world_size = world;
  o.prefix = "job/attempt-1/";
  o.timeout = timeout;
  return o;
}

TEST(CollectiveTest, GlooSumsOverThreeRanks) {
  ASSERT_TRUE(HaveEngine("gloo"));
  InMemoryStore store;
  const int world = 3;
  std::vector<at::Tensor> results(world);
  std::vector<absl::Status> statuses(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto group = CreateCollective(Options(r, world, std::chrono::seconds(20)), &store);
      if (!group.ok()) {
        statuses[r] = group.status();
        return;
      }
      at::Tensor t = at::arange(1000, at::kFloat) * (r + 1);  // [1000]
      for (int round = 0; round < 3; ++round) {
        statuses[r] = (*group)->AllReduceSum(t);
        if (!statuses[r].ok()) return;
      }
      results[r] = t;
    });
  }
  for (auto& t : threads) t.join();
  // Three rounds of summing x, 2x, 3x: 6x, then 18x, then 54x.
  const at::Tensor expected = at::arange(1000, at::kFloat) * 54;
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(statuses[r].ok()) << r << ": " << statuses[r];
    EXPECT_TRUE(at::equal(results[r], expected)) << r;
  }
}

TEST(CollectiveTest, MissingPeerFailsWithinTheTimeout) {
  InMemoryStore store;
  const auto start = std::chrono::steady_clock::now();
  // Rank 0 of 2 waits for a rank 1 that never comes.
  auto group = CreateCollective(Options(0, 2, std::chrono::milliseconds(500)), &store);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(group.ok());
  EXPECT_NE(group.status().message().find("gloo"), std::string::npos) << group.status();
  EXPECT_LT(secs, 10.0);
}

TEST(CollectiveTest, PeerThatDiesMidRunFailsTheOtherRank) {
  InMemoryStore store;
  absl::Status survivor;
  std::thread quitter([&] {
    auto group = CreateCollective(Options(1, 2, std::chrono::milliseconds(1000)), &store);
    ASSERT_TRUE(group.ok()) << group.status();
    at::Tensor t = at::ones({16});
    ASSERT_TRUE((*group)->AllReduceSum(t).ok());
    // Leaves without the second round: the group object dies with its sockets.
  });
  auto group = CreateCollective(Options(0, 2, std::chrono::milliseconds(1000)), &store);
  ASSERT_TRUE(group.ok()) << group.status();
  at::Tensor t = at::ones({16});
  ASSERT_TRUE((*group)->AllReduceSum(t).ok());
  EXPECT_TRUE(at::equal(t, at::full({16}, 2.0f)));
  quitter.join();
  const auto start = std::chrono::steady_clock::now();
  survivor = (*group)->AllReduceSum(t);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(survivor.ok());
  EXPECT_LT(secs, 10.0);
  // Once failed, the group refuses further work.
  EXPECT_FALSE((*group)->AllReduceSum(t).ok());
}

// Issue 15, finding 6: a rank whose peer hangs (SIGSTOP: its sockets stay open) leaves a
// pending all-reduce as soon as it is aborted, not at the group's timeout.
TEST(CollectiveTest, AbortEndsAPendingAllReduceWhosePeerHangs) {
  InMemoryStore store;
  std::atomic<bool> release{false};
  std::unique_ptr<Collective> hung;
  std::thread peer([&] {
    auto group = CreateCollective(Options(1, 2, std::chrono::seconds(60)), &store);
    ASSERT_TRUE(group.ok()) << group.status();
    hung = std::move(*group);  // connected, then never joins the all-reduce
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  auto group = CreateCollective(Options(0, 2, std::chrono::seconds(60)), &store);
  ASSERT_TRUE(group.ok()) << group.status();
  Collective* rank0 = group->get();
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    rank0->Abort();
  });
  const auto start = std::chrono::steady_clock::now();
  at::Tensor t = at::ones({1024});
  absl::Status s = rank0->AllReduceSum(t);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  aborter.join();
  release = true;
  peer.join();
  EXPECT_FALSE(s.ok());
  EXPECT_LT(secs, 10.0) << "the all-reduce waited for its 60 s timeout: " << s;
  EXPECT_FALSE(rank0->AllReduceSum(t).ok());  // an aborted group refuses further work
}

TEST(CollectiveTest, BadOptionsAndMissingEnginesAreRefused) {
  InMemoryStore store;
  auto bad_rank = CreateCollective(Options(2, 2, std::chrono::seconds(1)), &store);
  EXPECT_TRUE(absl::IsInvalidArgument(bad_rank.status())) << bad_rank.status();
  CollectiveOptions o = Options(0, 1, std::chrono::seconds(1));
  o.engine = "mpi";
  EXPECT_TRUE(absl::IsFailedPrecondition(CreateCollective(o, &store).status()));
}

}  // namespace
}  // namespace llava
