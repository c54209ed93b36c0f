// Gloo collectives in one process: ranks on threads meet through an in-memory
// rendezvous store, sum and broadcast exactly, and a missing peer fails within the timeout
// instead of hanging (and, in two processes, an aborted rank whose peer was stopped
// mid-transfer leaves at once; a write to a gone peer never kills the process). An eval
// attempt's ranks share one fetch of the projector over such a group
// (worker/projector_share.h). (NCCL needs GPUs: it is exercised by the GPU runs in
// bench/RESULTS.md.)
#include "worker/collective.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <mutex>
#include <thread>

#include "common/file_util.h"
#include "coordinator/rendezvous_store.h"
#include "test_util.h"
#include "worker/projector_share.h"

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

// `world` ranks on threads, each meeting the group and running `body` on it; their statuses.
std::vector<absl::Status> OnRanks(int world,
                                  const std::function<absl::Status(int rank, Collective&)>& body) {
  InMemoryStore store;
  std::vector<absl::Status> statuses(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto group = CreateCollective(Options(r, world, std::chrono::seconds(20)), &store);
      statuses[r] = group.ok() ? body(r, **group) : group.status();
    });
  }
  for (auto& t : threads) t.join();
  return statuses;
}

TEST(CollectiveTest, GlooSumsOverThreeRanks) {
  ASSERT_TRUE(HaveEngine("gloo"));
  const int world = 3;
  std::vector<at::Tensor> results(world);
  std::vector<absl::Status> statuses = OnRanks(world, [&](int r, Collective& group) {
    at::Tensor t = at::arange(1000, at::kFloat) * (r + 1);  // [1000]
    for (int round = 0; round < 3; ++round) {
      if (absl::Status s = group.AllReduceSum(t); !s.ok()) return s;
    }
    results[r] = t;
    return absl::OkStatus();
  });
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
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(survivor.ok());
  EXPECT_LT(secs, 10.0);
  // Once failed, the group refuses further work.
  EXPECT_FALSE((*group)->AllReduceSum(t).ok());
}

// Rank `rank` of 2 runs `op` while its peer, connected, never joins it (hung: its sockets
// stay open); Abort() comes from another thread 300 ms in. What `op` returned, how long it
// took, and what a second `op` on the aborted group returns.
struct AbortOutcome {
  absl::Status status;
  double seconds = 0;
  absl::Status after;
};
AbortOutcome AbortWhileThePeerHangs(int64_t rank,
                                    const std::function<absl::Status(Collective&)>& op) {
  InMemoryStore store;
  std::atomic<bool> release{false};
  std::thread peer([&] {
    auto group = CreateCollective(Options(1 - rank, 2, std::chrono::seconds(60)), &store);
    EXPECT_TRUE(group.ok()) << group.status();
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  auto group = CreateCollective(Options(rank, 2, std::chrono::seconds(60)), &store);
  if (!group.ok()) {
    release = true;
    peer.join();
    return {group.status(), 0, group.status()};
  }
  Collective* waiting = group->get();
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    waiting->Abort();
  });
  const auto start = std::chrono::steady_clock::now();
  AbortOutcome out;
  out.status = op(*waiting);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  aborter.join();
  release = true;
  peer.join();
  out.after = op(*waiting);
  return out;
}

// Issue 15, finding 6: a rank whose peer hangs (SIGSTOP: its sockets stay open) leaves a
// pending all-reduce as soon as it is aborted, not at the group's timeout.
TEST(CollectiveTest, AbortEndsAPendingAllReduceWhosePeerHangs) {
  at::Tensor t = at::ones({1024});
  AbortOutcome o = AbortWhileThePeerHangs(0, [&](Collective& c) { return c.AllReduceSum(t); });
  EXPECT_FALSE(o.status.ok());
  EXPECT_LT(o.seconds, 10.0) << "the all-reduce waited for its 60 s timeout: " << o.status;
  EXPECT_FALSE(o.after.ok());  // an aborted group refuses further work
}

// A receiver whose root never sends leaves the broadcast when it is aborted, likewise.
TEST(CollectiveTest, AbortEndsAPendingBroadcastWhoseRootHangs) {
  at::Tensor t = at::zeros({1 << 16}, at::kByte);
  AbortOutcome o = AbortWhileThePeerHangs(1, [&](Collective& c) { return c.Broadcast(t, 0); });
  EXPECT_FALSE(o.status.ok());
  EXPECT_LT(o.seconds, 10.0) << "the broadcast waited for its 60 s timeout: " << o.status;
  EXPECT_FALSE(o.after.ok());
}

// The cluster test's SIGSTOP case on a loaded machine: the stopped rank, continued after
// its peer had left the group, wrote to the closed connection and SIGPIPE ended its
// process without a log line. Gloo writes with writev(2) (no MSG_NOSIGNAL), so once a
// process has a Gloo group, a write to a connection that is gone must fail with EPIPE
// instead. Checked in a child process, which the signal's default action would end.
TEST(CollectiveTest, AWriteToAGoneConnectionFailsInsteadOfKillingAGlooProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        InMemoryStore store;
        auto group = CreateCollective(Options(0, 1, std::chrono::seconds(5)), &store);
        if (!group.ok()) _exit(2);
        int fds[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) _exit(3);
        close(fds[1]);  // the peer is gone
        const char byte = 0;
        const ssize_t n = write(fds[0], &byte, 1);
        _exit(n == -1 && errno == EPIPE ? 0 : 4);
      },
      ::testing::ExitedWithCode(0), "");
}

// A rendezvous store in files under `dir`, for ranks in separate processes.
class FileStore : public RendezvousClient {
 public:
  explicit FileStore(std::string dir) : dir_(std::move(dir)) {}
  absl::Status Set(const std::string& key, const std::string& value) override {
    return WriteFileAtomic(Path(key), value);
  }
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds wait) override {
    const auto end = std::chrono::steady_clock::now() + wait;
    while (true) {
      if (auto v = ReadFile(Path(key)); v.ok()) return v;
      if (std::chrono::steady_clock::now() > end) return absl::DeadlineExceededError(key);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  std::string Path(std::string key) const {
    std::replace(key.begin(), key.end(), '/', '_');
    return dir_ + "/" + key;
  }
  std::string dir_;
};

// The cluster test's SIGSTOP case again, in two processes: the receiver of a large
// broadcast is stopped while the bytes move, so the root's send is left half written in
// Gloo's transport queue, and Gloo fails only the waits it still tracks when the sockets
// go down (not that send's). Abort() must still end the root's broadcast at once, not at
// the group's timeout. Run in a child process (the stopped receiver is its own child).
TEST(CollectiveTest, AbortEndsABroadcastCutShortByAStoppedReceiver) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string dir = testing::MakeTempDir("collective");
  EXPECT_EXIT(
      {
        const int64_t n = 256 << 20;  // bytes: long enough in flight to stop the peer within
        const pid_t peer = fork();
        if (peer == 0) {
          FileStore store(dir);
          auto group = CreateCollective(Options(1, 2, std::chrono::seconds(30)), &store);
          if (!group.ok()) _exit(2);
          at::Tensor t = at::zeros({n}, at::kByte);
          (void)store.Set("peer-ready", "1");
          (void)(*group)->Broadcast(t, 0);
          _exit(0);
        }
        FileStore store(dir);
        auto group = CreateCollective(Options(0, 2, std::chrono::seconds(30)), &store);
        if (!group.ok()) _exit(3);
        at::Tensor t = at::ones({n}, at::kByte);
        Collective* const g = group->get();
        std::thread stopper([&] {
          (void)store.Get("peer-ready", std::chrono::seconds(30));
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          kill(peer, SIGSTOP);
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          g->Abort();
        });
        const auto start = std::chrono::steady_clock::now();
        const absl::Status s = g->Broadcast(t, 0);
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        stopper.join();
        kill(peer, SIGKILL);
        waitpid(peer, nullptr, 0);
        std::fprintf(stderr, "broadcast: %s after %.1f s\n", s.ToString().c_str(), secs);
        _exit(secs < 10.0 ? 0 : 4);
      },
      ::testing::ExitedWithCode(0), "broadcast: ");
}

TEST(CollectiveTest, BadOptionsAndMissingEnginesAreRefused) {
  InMemoryStore store;
  auto bad_rank = CreateCollective(Options(2, 2, std::chrono::seconds(1)), &store);
  EXPECT_TRUE(absl::IsInvalidArgument(bad_rank.status())) << bad_rank.status();
  CollectiveOptions o = Options(0, 1, std::chrono::seconds(1));
  o.engine = "mpi";
  EXPECT_TRUE(absl::IsFailedPrecondition(CreateCollective(o, &store).status()));
}

TEST(CollectiveTest, GlooBroadcastCopiesTheRootsBytesToEveryRank) {
  const int world = 3;
  // An odd byte count, then a tensor of another dtype, from two different roots.
  const at::Tensor bytes = (at::arange(1001, at::kInt) % 251).to(at::kByte);
  const at::Tensor longs = at::arange(7, at::kLong) * (int64_t{1} << 40);
  std::vector<at::Tensor> got_bytes(world), got_longs(world);
  std::vector<absl::Status> statuses = OnRanks(world, [&](int r, Collective& group) {
    got_bytes[r] = r == 2 ? bytes.clone() : at::zeros({1001}, at::kByte);
    got_longs[r] = r == 0 ? longs.clone() : at::zeros({7}, at::kLong);
    absl::Status s = group.Broadcast(got_bytes[r], 2);
    return s.ok() ? group.Broadcast(got_longs[r], 0) : s;
  });
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(statuses[r].ok()) << r << ": " << statuses[r];
    EXPECT_TRUE(at::equal(got_bytes[r], bytes)) << r;
    EXPECT_TRUE(at::equal(got_longs[r], longs)) << r;
  }
}

TEST(CollectiveTest, BroadcastRefusesABadRootOrBuffer) {
  InMemoryStore store;
  auto group = CreateCollective(Options(0, 1, std::chrono::seconds(5)), &store);
  ASSERT_TRUE(group.ok()) << group.status();
  at::Tensor t = at::zeros({4}, at::kByte);
  EXPECT_TRUE(absl::IsInvalidArgument((*group)->Broadcast(t, 1)));
  EXPECT_TRUE(absl::IsInvalidArgument((*group)->Broadcast(t, -1)));
  at::Tensor strided = at::zeros({4, 4}, at::kByte).t();
  EXPECT_TRUE(absl::IsInvalidArgument((*group)->Broadcast(strided, 0)));
  EXPECT_TRUE((*group)->Broadcast(t, 0).ok());  // a group of one: nothing to move
}

// ---- ShareProjector: the ranks of an eval attempt, one fetch

// A projector-only file's stand-in: bytes no rank could guess (several Gloo chunks).
std::string ProjectorBytes() {
  std::string out(300001, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>((i * 2654435761u) >> 13);
  return out;
}

struct ShareRun {
  std::vector<absl::StatusOr<ProjectorShare>> results;
  std::vector<double> seconds;
  std::atomic<int> fetches{0};
  std::atomic<int> attached{0}, detached{0};
};

// `world` ranks on threads; rank r has the projector iff have[r]. Rank 0's fetch is
// `fetch`. Every group is dropped (detached) before this returns.
void RunShare(const std::vector<bool>& have, std::chrono::milliseconds timeout,
              const std::function<absl::StatusOr<std::string>()>& fetch, ShareRun* run,
              const std::function<void(int64_t, Collective*)>& on_collective = nullptr) {
  InMemoryStore store;
  const int world = static_cast<int>(have.size());
  run->results.clear();
  for (int r = 0; r < world; ++r) run->results.emplace_back(absl::UnknownError("not run"));
  run->seconds.assign(world, 0);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      ProjectorShareOptions o;
      o.collective = Options(r, world, timeout);
      o.have = have[r];
      auto counted_fetch = [&]() {
        ++run->fetches;
        return fetch();
      };
      auto attach = [&, r](Collective* c) {
        ++(c != nullptr ? run->attached : run->detached);
        if (on_collective) on_collective(r, c);
      };
      const auto start = std::chrono::steady_clock::now();
      run->results[r] = ShareProjector(o, &store, counted_fetch, attach);
      run->seconds[r] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (run->results[r].ok()) run->results[r]->group.Reset();
    });
  }
  for (auto& t : threads) t.join();
}

TEST(ProjectorShareTest, ThreeRanksThatLackItShareOneFetch) {
  const std::string bytes = ProjectorBytes();
  ShareRun run;
  RunShare(
      {false, false, false}, std::chrono::seconds(20), [&] { return bytes; }, &run);
  EXPECT_EQ(run.fetches.load(), 1);
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(run.results[r].ok()) << r << ": " << run.results[r].status();
    EXPECT_TRUE(run.results[r]->bytes == bytes) << r;
    EXPECT_EQ(run.results[r]->fetched, r == 0) << r;
  }
  EXPECT_EQ(run.attached.load(), 3);
  EXPECT_EQ(run.detached.load(), 3);
}

TEST(ProjectorShareTest, NoGroupFormsWhenEveryRankHasIt) {
  ShareRun run;
  RunShare(
      {true, true, true}, std::chrono::seconds(20), [] { return std::string("unused"); }, &run);
  EXPECT_EQ(run.fetches.load(), 0);
  EXPECT_EQ(run.attached.load(), 0);
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(run.results[r].ok()) << r << ": " << run.results[r].status();
    EXPECT_TRUE(run.results[r]->bytes.empty());
    EXPECT_EQ(run.results[r]->group.get(), nullptr);
  }
}

TEST(ProjectorShareTest, ARankThatLacksItGetsRankZerosCopy) {
  const std::string bytes = ProjectorBytes();
  ShareRun run;
  // Rank 0's fetch is its cache here: it has the projector, rank 1 does not, rank 2 does.
  RunShare(
      {true, false, true}, std::chrono::seconds(20), [&] { return bytes; }, &run);
  EXPECT_EQ(run.fetches.load(), 1);
  for (int r = 0; r < 3; ++r)
    ASSERT_TRUE(run.results[r].ok()) << r << ": " << run.results[r].status();
  EXPECT_TRUE(run.results[1]->bytes == bytes);
  EXPECT_TRUE(run.results[0]->bytes.empty());  // the ranks that had it get nothing new
  EXPECT_TRUE(run.results[2]->bytes.empty());
  EXPECT_EQ(run.attached.load(), 3);
}

// Rank 0's failed fetch reaches the others as its error, at once: not at the 60 s timeout.
TEST(ProjectorShareTest, RankZerosFailedFetchFailsEveryRankWithItsError) {
  ShareRun run;
  RunShare(
      {false, false, false}, std::chrono::seconds(60),
      [] {
        return absl::StatusOr<std::string>(absl::NotFoundError("no checkpoint 'train-000009'"));
      },
      &run);
  EXPECT_EQ(run.fetches.load(), 1);
  ASSERT_FALSE(run.results[0].ok());
  EXPECT_TRUE(absl::IsNotFound(run.results[0].status())) << run.results[0].status();
  for (int r = 1; r < 3; ++r) {
    ASSERT_FALSE(run.results[r].ok()) << r;
    const std::string message(run.results[r].status().message());
    EXPECT_NE(message.find("rank 0 could not fetch the projector"), std::string::npos) << message;
    EXPECT_NE(message.find("no checkpoint 'train-000009'"), std::string::npos) << message;
    EXPECT_LT(run.seconds[r], 10.0) << r;
  }
  EXPECT_EQ(run.detached.load(), run.attached.load());
}

// The ranks waiting for rank 0 (whose fetch hangs) leave when aborted from another thread,
// as the heartbeat thread does when the coordinator ends the attempt; rank 0 then fails
// too once its fetch returns, its peers gone.
TEST(ProjectorShareTest, AbortEndsTheWaitForAHungRankZero) {
  std::atomic<bool> release{false};
  std::mutex mu;
  std::vector<Collective*> waiting;  // ranks 1 and 2's groups, once attached
  std::thread aborter([&] {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < give_up) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (waiting.size() == 2) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // into the broadcast
    std::lock_guard<std::mutex> lock(mu);
    for (Collective* c : waiting) c->Abort();
  });
  ShareRun run;
  const std::string bytes = ProjectorBytes();
  std::thread releaser([&] {
    aborter.join();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    release = true;
  });
  RunShare(
      {false, false, false}, std::chrono::seconds(60),
      [&]() -> absl::StatusOr<std::string> {
        while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return bytes;
      },
      &run,
      [&](int64_t rank, Collective* c) {
        std::lock_guard<std::mutex> lock(mu);
        if (rank != 0 && c != nullptr) waiting.push_back(c);
        if (c == nullptr) waiting.clear();  // never aborted after it is gone
      });
  releaser.join();
  for (int r = 0; r < 3; ++r) {
    EXPECT_FALSE(run.results[r].ok()) << r;
    EXPECT_LT(run.seconds[r], 10.0) << r << ": " << run.results[r].status();
  }
  EXPECT_EQ(run.detached.load(), run.attached.load());
}

}  // namespace
}  // namespace llava
