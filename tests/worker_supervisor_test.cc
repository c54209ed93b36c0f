// The multi-GPU worker's supervisor (launch/worker_supervisor.h) with stand-in ranks
// (/bin/sh scripts): every rank gets its own id, device and ports; a rank that ends by
// itself stops the others and is named; a stop request ends every rank, OK when all
// exit 0. The real ranks (llava-mnist workers) are in cluster_test.
#include "launch/worker_supervisor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/file_util.h"
#include "test_util.h"

namespace llava {
namespace {

TEST(WorkerSupervisorTest, PortsCountUpFromTheGivenOnes) {
  EXPECT_EQ(*OffsetListen("0.0.0.0:50053", 3), "0.0.0.0:50056");
  EXPECT_EQ(*OffsetListen("127.0.0.1:0", 3), "127.0.0.1:0");  // any free port, each its own
  EXPECT_EQ(*OffsetListen("", 3), "");
  EXPECT_FALSE(OffsetListen("127.0.0.1:65535", 1).ok());
  EXPECT_FALSE(OffsetListen("nonsense", 0).ok());
  SupervisorOptions o;
  o.worker_id = "pod";
  EXPECT_NE(o.Validate().message().find("--gpus"), std::string::npos);
  o.gpus = 2;
  EXPECT_TRUE(o.Validate().ok());
  o.device = "tpu";
  EXPECT_FALSE(o.Validate().ok());
}

TEST(WorkerSupervisorTest, EachRankGetsItsIdDeviceAndPortsAndAStopEndsThemAll) {
  const std::string dir = testing::MakeTempDir("supervisor");
  SupervisorOptions o;
  o.gpus = 3;
  o.worker_id = "pod";
  o.health_listen = "127.0.0.1:51000";
  o.grace = std::chrono::seconds(10);
  // Each rank writes its arguments (the overrides come last) and waits for SIGTERM.
  const std::vector<std::string> line = {
      "-c", "echo \"$@\" > " + dir + "/$$.args; trap 'exit 0' TERM; while :; do sleep 0.05; done",
      "sh"};
  std::atomic<bool> stop{false};
  absl::Status result;
  std::thread supervisor([&] { result = RunWorkerSupervisor(o, "/bin/sh", line, stop); });
  std::vector<std::string> seen;
  for (int i = 0; i < 200 && seen.size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    seen = ListDir(dir);
  }
  stop = true;
  supervisor.join();
  EXPECT_TRUE(result.ok()) << result;
  ASSERT_EQ(seen.size(), 3u);
  std::vector<std::string> args;
  for (const std::string& name : seen) args.push_back(*ReadFile(dir + "/" + name));
  std::sort(args.begin(), args.end());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(args[i], "--gpus= --worker_id=pod-gpu" + std::to_string(i) +
                           " --device=cuda:" + std::to_string(i) + " --health_listen=127.0.0.1:" +
                           std::to_string(51000 + i) + " --metrics_listen=\n");
  }
}

TEST(WorkerSupervisorTest, ARankThatEndsByItselfStopsTheOthersAndIsNamed) {
  SupervisorOptions o;
  o.gpus = 2;
  o.worker_id = "pod";
  o.device = "cpu";
  o.grace = std::chrono::seconds(10);
  // Rank 1 fails at once; rank 0 would run for a minute.
  const std::vector<std::string> line = {"-c", "case \"$2\" in *gpu1) exit 3;; esac; sleep 60",
                                         "sh"};
  std::atomic<bool> stop{false};
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = RunWorkerSupervisor(o, "/bin/sh", line, stop);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find("pod-gpu1 ended by itself (exit status 3)"), std::string::npos) << s;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));  // not the minute
}

}  // namespace
}  // namespace llava
