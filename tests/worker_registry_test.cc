// The coordinator's registry of workers (coordinator/worker_registry.h), on the clock the
// test passes: sessions (unguessable, one live per worker id, a silent one replaced),
// expiry, the mailbox a heartbeat or its long poll takes (tasks, aborts, a task released
// before delivery never delivered), leaving, the reasons a session is gone, the bound on
// workers, and paged listing.
#include "coordinator/worker_registry.h"

#include <gtest/gtest.h>

#include <thread>

namespace llava {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kTimeout{1000};

v1::WorkerInfo Info(const std::string& id, const std::string& model = "synthetic:tiny") {
  v1::WorkerInfo info;
  info.set_worker_id(id);
  info.set_device("cpu");
  info.set_model(model);
  info.set_collective("gloo");
  info.set_collective_host("127.0.0.1");
  info.set_hidden_size(64);
  info.set_train_images(100);
  info.set_test_images(10);
  return info;
}

v1::Task TaskFor(const std::string& job, int64_t attempt) {
  v1::Task task;
  task.mutable_ref()->set_job_id(job);
  task.mutable_ref()->set_attempt(attempt);
  task.mutable_train()->set_world_size(1);
  return task;
}

v1::HeartbeatRequest Beat(const std::string& id, const std::string& session,
                          const v1::TaskRef* running = nullptr) {
  v1::HeartbeatRequest r;
  r.set_worker_id(id);
  r.set_session_id(session);
  if (running != nullptr) *r.mutable_running() = *running;
  return r;
}

TEST(WorkerRegistryTest, SessionsAreUnguessableAndLiveWhileHeartbeatsCome) {
  WorkerRegistry registry(kTimeout);
  const Clock::time_point t0 = Clock::now();
  auto a = registry.Register(Info("a"), t0);
  auto b = registry.Register(Info("b"), t0);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);  // 128 bits, hex
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(registry.CheckSession("a", *a).ok());
  EXPECT_TRUE(absl::IsNotFound(registry.CheckSession("a", *b)));

  EXPECT_TRUE(registry.IsLive("a", *a, t0 + kTimeout));
  EXPECT_FALSE(registry.IsLive("a", *a, t0 + kTimeout + milliseconds(1)));
  ASSERT_TRUE(registry.Heartbeat(Beat("a", *a), t0 + milliseconds(900)).ok());
  EXPECT_TRUE(registry.IsLive("a", *a, t0 + milliseconds(1800)));
  EXPECT_FALSE(registry.IsLive("b", *b, t0 + milliseconds(1800)));
  EXPECT_EQ(registry.CountLive("", t0 + milliseconds(1800)), 1);
  EXPECT_EQ(registry.GoneReason("b", *b, t0 + milliseconds(1800)), "no heartbeat for 1800 ms");
  EXPECT_TRUE(absl::IsNotFound(registry.Heartbeat(Beat("a", "0123"), t0).status()));
}

TEST(WorkerRegistryTest, ALiveIdGetsNoSecondSessionAndASilentOneIsReplaced) {
  WorkerRegistry registry(kTimeout);
  const Clock::time_point t0 = Clock::now();
  auto first = registry.Register(Info("a"), t0);
  ASSERT_TRUE(first.ok());
  auto refused = registry.Register(Info("a"), t0 + milliseconds(500));
  EXPECT_TRUE(absl::IsAlreadyExists(refused.status())) << refused.status();

  auto second = registry.Register(Info("a"), t0 + kTimeout + milliseconds(1));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(*first, *second);
  EXPECT_TRUE(absl::IsNotFound(registry.Heartbeat(Beat("a", *first), t0 + kTimeout).status()));
  EXPECT_FALSE(registry.IsLive("a", *first, t0 + kTimeout + milliseconds(2)));
  EXPECT_EQ(registry.GoneReason("a", *first, t0 + kTimeout), "it registered again (a restart)");
}

TEST(WorkerRegistryTest, MalformedRegistrationsAreRefusedNamingTheField) {
  WorkerRegistry registry(kTimeout);
  v1::WorkerInfo info = Info("a");
  info.set_collective("mpi");
  auto s = registry.Register(info, Clock::now());
  EXPECT_TRUE(absl::IsInvalidArgument(s.status()));
  EXPECT_NE(s.status().message().find("collective"), std::string::npos) << s.status();
  info = Info("a");
  info.set_hidden_size(0);
  s = registry.Register(info, Clock::now());
  EXPECT_TRUE(absl::IsInvalidArgument(s.status()));
  EXPECT_NE(s.status().message().find("hidden_size"), std::string::npos) << s.status();
  EXPECT_TRUE(absl::IsInvalidArgument(registry.Register(Info(""), Clock::now()).status()));
  EXPECT_TRUE(registry.List(Clock::now()).empty());
}

TEST(WorkerRegistryTest, AtTheBoundSilentWorkersMakeRoomAndLiveOnesDoNot) {
  WorkerRegistry registry(kTimeout, /*max_workers=*/2);
  const Clock::time_point t0 = Clock::now();
  auto a = registry.Register(Info("a"), t0);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(registry.Register(Info("b"), t0).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(registry.Register(Info("c"), t0).status()));
  // a keeps beating; b falls silent and its record makes room for c.
  ASSERT_TRUE(registry.Heartbeat(Beat("a", *a), t0 + milliseconds(900)).ok());
  ASSERT_TRUE(registry.Register(Info("c"), t0 + milliseconds(1500)).ok());
  std::vector<std::string> ids;
  for (const v1::WorkerStatus& w : registry.List(t0 + milliseconds(1500)))
    ids.push_back(w.info().worker_id());
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "c"}));
}

TEST(WorkerRegistryTest, AHeartbeatTakesTheMailboxAndAnAssignedWorkerIsNotIdle) {
  WorkerRegistry registry(kTimeout);
  const Clock::time_point t0 = Clock::now();
  auto a = registry.Register(Info("a"), t0);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(registry.Idle(t0).size(), 1u);

  const v1::Task task = TaskFor("train-000001", 1);
  registry.Assign("a", *a, task);
  EXPECT_TRUE(registry.Idle(t0).empty());
  auto reply = registry.Heartbeat(Beat("a", *a), t0);
  ASSERT_TRUE(reply.ok());
  ASSERT_TRUE(reply->has_task());
  EXPECT_EQ(reply->task().ref().job_id(), "train-000001");
  reply = registry.Heartbeat(Beat("a", *a, &task.ref()), t0);
  ASSERT_TRUE(reply.ok());
  EXPECT_FALSE(reply->has_task());  // taken once

  // Released with abort while it runs: the next heartbeat says so, and the worker stays
  // busy until a heartbeat shows the task stopped.
  registry.Release("a", *a, task.ref(), /*abort=*/true);
  reply = registry.Heartbeat(Beat("a", *a, &task.ref()), t0);
  ASSERT_TRUE(reply.ok());
  ASSERT_EQ(reply->abort_size(), 1);
  EXPECT_EQ(reply->abort(0).attempt(), 1);
  EXPECT_TRUE(registry.Idle(t0).empty());
  ASSERT_TRUE(registry.Heartbeat(Beat("a", *a), t0).ok());
  EXPECT_EQ(registry.Idle(t0).size(), 1u);
}

TEST(WorkerRegistryTest, ATaskReleasedBeforeDeliveryIsNeverDeliveredNorAborted) {
  WorkerRegistry registry(kTimeout);
  const Clock::time_point t0 = Clock::now();
  auto a = registry.Register(Info("a"), t0);
  ASSERT_TRUE(a.ok());
  const v1::Task task = TaskFor("train-000001", 1);
  registry.Assign("a", *a, task);
  registry.Release("a", *a, task.ref(), /*abort=*/true);
  auto reply = registry.Heartbeat(Beat("a", *a), t0);
  ASSERT_TRUE(reply.ok());
  EXPECT_FALSE(reply->has_task());
  EXPECT_EQ(reply->abort_size(), 0);
  EXPECT_EQ(registry.Idle(t0).size(), 1u);
  // A stale session's assignment goes nowhere.
  registry.Assign("a", "not-the-session", task);
  EXPECT_EQ(registry.Idle(t0).size(), 1u);
}

TEST(WorkerRegistryTest, ALongPollEndsWithMailAtItsDeadlineOrWhenTheSessionEnds) {
  WorkerRegistry registry(kTimeout);
  auto a = registry.Register(Info("a"), Clock::now());
  ASSERT_TRUE(a.ok());

  // Mail: the poll ends as soon as it is queued.
  std::thread assigner([&] {
    std::this_thread::sleep_for(milliseconds(50));
    registry.Assign("a", *a, TaskFor("train-000001", 1));
  });
  auto start = Clock::now();
  auto reply = registry.WaitForMail("a", *a, Clock::now() + std::chrono::seconds(20));
  assigner.join();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->has_task());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));

  // No mail: an empty reply at the deadline, and the worker counts as alive (it waited on us).
  start = Clock::now();
  reply = registry.WaitForMail("a", *a, Clock::now() + milliseconds(100));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_FALSE(reply->has_task());
  EXPECT_GE(Clock::now() - start, milliseconds(100));
  EXPECT_TRUE(registry.IsLive("a", *a, Clock::now()));

  // The session leaves meanwhile: NOT_FOUND at once.
  std::thread leaver([&] {
    std::this_thread::sleep_for(milliseconds(50));
    ASSERT_TRUE(registry.Leave("a", *a, "SIGTERM").ok());
  });
  start = Clock::now();
  reply = registry.WaitForMail("a", *a, Clock::now() + std::chrono::seconds(20));
  leaver.join();
  EXPECT_TRUE(absl::IsNotFound(reply.status())) << reply.status();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));

  // Shutdown ends a waiting poll with an empty reply.
  auto b = registry.Register(Info("b"), Clock::now());
  ASSERT_TRUE(b.ok());
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(50));
    registry.Shutdown();
  });
  start = Clock::now();
  reply = registry.WaitForMail("b", *b, Clock::now() + std::chrono::seconds(20));
  stopper.join();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

TEST(WorkerRegistryTest, ALeftSessionIsGoneWithItsReasonAndCannotLeaveTwice) {
  WorkerRegistry registry(kTimeout);
  const Clock::time_point t0 = Clock::now();
  auto a = registry.Register(Info("a"), t0);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(absl::IsNotFound(registry.Leave("a", "someone-else", "posing")));
  ASSERT_TRUE(registry.Leave("a", *a, "the worker is stopping (signal)").ok());
  EXPECT_TRUE(absl::IsNotFound(registry.Leave("a", *a, "again")));
  EXPECT_TRUE(absl::IsNotFound(registry.CheckSession("a", *a)));
  EXPECT_FALSE(registry.IsLive("a", *a, t0));
  EXPECT_EQ(registry.GoneReason("a", *a, t0), "it left (the worker is stopping (signal))");
  EXPECT_TRUE(registry.List(t0).empty());
  // The id registers again at once: its old session is gone, not merely silent.
  EXPECT_TRUE(registry.Register(Info("a"), t0).ok());
}

TEST(WorkerRegistryTest, ListIsPagedByWorkerIdAndCountsLiveWorkersPerModel) {
  WorkerRegistry registry(kTimeout);
  const Clock::time_point t0 = Clock::now();
  for (const char* id : {"d", "b", "a", "c"}) {
    ASSERT_TRUE(registry.Register(Info(id, std::string(id) < "c" ? "m1" : "m2"), t0).ok());
  }
  auto page = registry.List(t0, "", 2);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].info().worker_id(), "a");
  EXPECT_EQ(page[1].info().worker_id(), "b");
  page = registry.List(t0, "b", 10);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].info().worker_id(), "c");
  EXPECT_TRUE(page[1].alive());
  EXPECT_FALSE(registry.List(t0 + milliseconds(2000))[0].alive());
  EXPECT_EQ(registry.CountLive("m1", t0), 2);
  EXPECT_EQ(registry.CountLive("m2", t0), 2);
  EXPECT_EQ(registry.CountLive("", t0), 4);
  EXPECT_EQ(registry.CountLive("m3", t0), 0);
}

}  // namespace
}  // namespace llava
