// The worker agent (worker/worker_agent.h) against an in-memory coordinator
// (tests/fake_coordinator.h), with no processes and no sockets: it registers, runs the
// tasks its heartbeats bring and reports their results after flushing rank 0's metrics;
// registers again when the coordinator no longer knows its session (a new coordinator),
// abandoning what it ran; stops when the coordinator stays unreachable past
// coordinator_lost_after; abandons a task (and aborts its group) when a heartbeat says so;
// and on stop leaves the coordinator before abandoning its task. The task itself is
// scripted (a TaskRunner that takes 1 ms steps and checks the abort flag between them, as
// the real tasks do): what is tested here is the agent.
#include "worker/worker_agent.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>

#include "common/job_spec.h"
#include "common/llama_weights.h"
#include "common/mnist_idx.h"
#include "tests/fake_collective.h"
#include "tests/fake_coordinator.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using testing::FakeCollective;
using testing::FakeCoordinator;
using testing::IsOk;
using testing::WaitUntil;
using Call = FakeCoordinator::Call;
using std::chrono::milliseconds;

v1::TaskRef Ref(const std::string& job, int64_t attempt, int64_t rank = 0) {
  v1::TaskRef ref;
  ref.set_job_id(job);
  ref.set_attempt(attempt);
  ref.set_rank(rank);
  return ref;
}

v1::Task TrainTask(const v1::TaskRef& ref) {
  v1::Task task;
  *task.mutable_ref() = ref;
  task.mutable_train()->set_world_size(1);
  return task;
}

// A task of `steps` steps (-1: until aborted), 1 ms each, reporting each step's metrics
// and checking the abort flag at each step boundary; with `group`, it hands the group to
// the agent while it runs, as a training task does.
struct ScriptedTask {
  std::atomic<int64_t> steps{3};
  std::atomic<FakeCollective*> group{nullptr};
  std::atomic<bool> throws{false};
  // Called on the task thread when the task sees the abort flag (before it returns).
  std::function<void()> on_abort;
  std::atomic<int> started{0};
  std::atomic<bool> saw_abort{false};

  TaskRunner Runner() {
    return [this](const v1::Task& task, const TaskEnv& env) {
      ++started;
      if (throws) throw std::runtime_error("CUDA out of memory (scripted)");
      FakeCollective* const g = group.load();
      if (g != nullptr) env.on_collective(g);
      TaskOutcome out;
      const int64_t n = steps.load();
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      for (int64_t s = 0; n < 0 || s < n; ++s) {
        if (env.abort->load()) {
          saw_abort = true;
          if (on_abort) on_abort();
          out.status = absl::AbortedError("aborted by the coordinator");
          break;
        }
        if (std::chrono::steady_clock::now() > give_up) {
          out.status = absl::DeadlineExceededError("the scripted task was never aborted");
          break;
        }
        v1::StepMetrics m;
        m.set_step(s + 1);
        m.set_loss(1.0 / (s + 1));
        env.on_step(m);
        out.step = s + 1;
        std::this_thread::sleep_for(milliseconds(1));
      }
      if (g != nullptr) env.on_collective(nullptr);
      return out;
    };
  }
};

class WorkerAgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto model = LoadLlama("synthetic:tiny", ModelOptions());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
    digits_ = new MnistSet();
    digits_->pixels.assign(4 * digits_->image_size(), 0);
    digits_->labels = {0, 1, 2, 3};
  }
  static void TearDownTestSuite() {
    delete model_;
    delete digits_;
  }

  void SetUp() override {
    auto fake = std::make_unique<FakeCoordinator>();
    coordinator_ = fake.get();
    fake_ = std::move(fake);
  }
  void TearDown() override { StopAndJoin(); }

  static WorkerOptions Options() {
    WorkerOptions o;
    o.worker_id = "worker-a";
    o.client.address = "fake";
    o.register_retry = milliseconds(5);
    return o;
  }

  // Runs the agent on a thread of its own.
  void Start(TaskRunner runner, WorkerOptions options = Options()) {
    WorkerResources r;
    r.model = model_;
    r.train = digits_;
    r.test = digits_;
    r.model_spec = "synthetic:tiny";
    agent_ = std::make_unique<WorkerAgent>(options, r, std::move(fake_), std::move(runner));
    thread_ = std::thread([this] {
      run_status_ = agent_->Run(&stop_);
      returned_ = true;
    });
  }
  // Starts the agent, hands it `task` (running until aborted) as `ref`, and waits until it
  // runs.
  void StartARunningTask(ScriptedTask& task, const v1::TaskRef& ref,
                         WorkerOptions options = Options()) {
    task.steps = -1;
    Start(task.Runner(), std::move(options));
    ASSERT_TRUE(Registered());
    coordinator_->QueueTask(TrainTask(ref));
    ASSERT_TRUE(WaitUntil([&] { return task.started.load() == 1; }));
  }
  void StopAndJoin() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool Registered(size_t times = 1) {
    return WaitUntil([&] {
      return coordinator_->registrations().size() >= times && !coordinator_->session().empty();
    });
  }

  static const LlamaModel* model_;
  static MnistSet* digits_;
  std::unique_ptr<FakeCoordinator> fake_;
  FakeCoordinator* coordinator_ = nullptr;  // owned by the agent once started
  std::unique_ptr<WorkerAgent> agent_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> returned_{false};
  absl::Status run_status_;
};

const LlamaModel* WorkerAgentTest::model_ = nullptr;
MnistSet* WorkerAgentTest::digits_ = nullptr;

TEST_F(WorkerAgentTest, RunsAQueuedTaskAndReportsItsResultAfterItsMetrics) {
  ScriptedTask task;
  Start(task.Runner());
  ASSERT_TRUE(Registered());
  const v1::WorkerInfo info = coordinator_->registrations()[0];
  EXPECT_EQ(info.worker_id(), "worker-a");
  EXPECT_EQ(info.hidden_size(), model_->config.hidden_size);
  EXPECT_EQ(info.train_images(), 4);
  EXPECT_EQ(info.model(), "synthetic:tiny");

  const v1::TaskRef ref = Ref("train-000001", 1);
  coordinator_->QueueTask(TrainTask(ref));
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->results().size() == 1; }));
  const std::vector<v1::HeartbeatRequest> heartbeats_at_result =
      coordinator_->heartbeats_at_result(0);
  const v1::TaskResultRequest result = coordinator_->results()[0];
  EXPECT_TRUE(result.ok()) << result.error();
  EXPECT_EQ(result.step(), 3);
  EXPECT_EQ(result.session_id(), "session-1");
  EXPECT_EQ(result.worker_id(), "worker-a");
  EXPECT_TRUE(SameTask(result.ref(), ref));

  // Rank 0's step metrics all reached the coordinator by the time of the result (the
  // last ones in the heartbeat that flushes them first), and heartbeats named the running
  // task. (A step may travel twice, in a long poll and in the flush; the coordinator
  // keeps a step once.)
  std::set<int64_t> steps;
  bool named = false;
  for (const v1::HeartbeatRequest& hb : heartbeats_at_result) {
    for (const v1::StepMetrics& m : hb.steps()) steps.insert(m.step());
    named = named || SameTask(hb.running(), ref);
  }
  EXPECT_EQ(steps, (std::set<int64_t>{1, 2, 3}));
  EXPECT_TRUE(named);

  StopAndJoin();
  EXPECT_THAT(run_status_, IsOk());
  ASSERT_EQ(coordinator_->leaves().size(), 1u);
  EXPECT_NE(coordinator_->leaves()[0].find("stopping"), std::string::npos);
}

TEST_F(WorkerAgentTest, ATaskThatThrowsFailsRetryablyAndTheWorkerGoesOn) {
  ScriptedTask task;
  task.throws = true;
  Start(task.Runner());
  ASSERT_TRUE(Registered());
  coordinator_->QueueTask(TrainTask(Ref("train-000001", 1)));
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->results().size() == 1; }));
  const v1::TaskResultRequest result = coordinator_->results()[0];
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(result.retryable());
  EXPECT_NE(result.error().find("CUDA out of memory"), std::string::npos) << result.error();

  task.throws = false;  // the task thread is idle: no race with the runner
  coordinator_->QueueTask(TrainTask(Ref("train-000001", 2)));
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->results().size() == 2; }));
  EXPECT_TRUE(coordinator_->results()[1].ok());
}

// The coordinator restarted (or replaced this worker's session): the heartbeat answers
// NOT_FOUND. The agent registers again, and abandons the task of the old session (the
// coordinator has counted it lost), aborting its group.
TEST_F(WorkerAgentTest, AForgottenSessionRegistersAgainAndAbandonsTheOldSessionsTask) {
  ScriptedTask task;
  FakeCollective group;
  task.group = &group;
  ASSERT_NO_FATAL_FAILURE(StartARunningTask(task, Ref("train-000001", 1)));

  coordinator_->ForgetSessions();
  ASSERT_TRUE(Registered(2));
  EXPECT_EQ(coordinator_->session(), "session-2");
  ASSERT_TRUE(WaitUntil([&] { return task.saw_abort.load(); }));
  EXPECT_TRUE(group.aborted());
  // Heartbeats go on under the new session.
  const size_t before = coordinator_->heartbeats().size();
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->heartbeats().size() > before + 1; }));
  EXPECT_EQ(coordinator_->heartbeats().back().session_id(), "session-2");
  EXPECT_FALSE(returned_.load());
  StopAndJoin();  // before `group` goes
}

TEST_F(WorkerAgentTest, AnUnreachableCoordinatorStopsTheWorkerOnlyAfterCoordinatorLostAfter) {
  ScriptedTask task;
  WorkerOptions options = Options();
  options.coordinator_lost_after = milliseconds(300);
  ASSERT_NO_FATAL_FAILURE(StartARunningTask(task, Ref("train-000001", 1), options));

  // A few failed heartbeats within the window are ridden out.
  coordinator_->FailNext(Call::kHeartbeat, absl::UnavailableError("connection refused"), 3);
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->count(Call::kHeartbeat) > 6; }));
  EXPECT_FALSE(task.saw_abort.load());
  EXPECT_FALSE(returned_.load());

  const auto cut = std::chrono::steady_clock::now();
  coordinator_->FailAlways(Call::kHeartbeat, absl::UnavailableError("connection refused"));
  ASSERT_TRUE(WaitUntil([&] { return returned_.load(); }));
  // Not before coordinator_lost_after from the last reply (which may have come just
  // before the cut).
  EXPECT_GE(std::chrono::steady_clock::now() - cut, milliseconds(250));
  EXPECT_TRUE(absl::IsUnavailable(run_status_)) << run_status_;
  EXPECT_TRUE(task.saw_abort.load());
  EXPECT_EQ(coordinator_->registrations().size(), 1u);  // never registered again
}

TEST_F(WorkerAgentTest, AnAbortInAHeartbeatReplyAbandonsThatTaskAndItsGroupOnly) {
  ScriptedTask task;
  FakeCollective group;
  task.group = &group;
  const v1::TaskRef ref = Ref("train-000001", 1);
  ASSERT_NO_FATAL_FAILURE(StartARunningTask(task, ref));

  // Another attempt's abort is not this task's.
  coordinator_->QueueAbort(Ref("train-000001", 0));
  const size_t before = coordinator_->heartbeats().size();
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->heartbeats().size() > before + 2; }));
  EXPECT_FALSE(task.saw_abort.load());
  EXPECT_FALSE(group.aborted());

  coordinator_->QueueAbort(ref);
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->results().size() == 1; }));
  EXPECT_TRUE(task.saw_abort.load());
  EXPECT_TRUE(group.aborted());
  const v1::TaskResultRequest result = coordinator_->results()[0];
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.error().find("aborted"), std::string::npos) << result.error();

  // The worker takes the next task under the same session.
  task.steps = 2;
  task.group = nullptr;
  coordinator_->QueueTask(TrainTask(Ref("train-000001", 2)));
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->results().size() == 2; }));
  EXPECT_TRUE(coordinator_->results()[1].ok());
  EXPECT_EQ(coordinator_->results()[1].step(), 2);
  EXPECT_EQ(coordinator_->registrations().size(), 1u);
  StopAndJoin();  // before `group` goes
}

// On stop the worker leaves first, so that the coordinator ends the attempt at once, and
// only then abandons its task; a left session takes no result.
TEST_F(WorkerAgentTest, StopLeavesTheCoordinatorBeforeAbandoningTheTask) {
  ScriptedTask task;
  std::atomic<int64_t> leaves_when_aborted{-1};
  task.on_abort = [&] { leaves_when_aborted = coordinator_->count(Call::kLeave); };
  ASSERT_NO_FATAL_FAILURE(StartARunningTask(task, Ref("train-000001", 1)));

  StopAndJoin();
  EXPECT_THAT(run_status_, IsOk());
  EXPECT_TRUE(task.saw_abort.load());
  EXPECT_EQ(leaves_when_aborted.load(), 1);
  EXPECT_EQ(coordinator_->count(Call::kReportTaskResult), 0);
  EXPECT_TRUE(coordinator_->session().empty());
}

TEST_F(WorkerAgentTest, RegistrationIsRetriedWhileTheCoordinatorIsUnavailable) {
  coordinator_->FailNext(Call::kRegister, absl::UnavailableError("connection refused"), 2);
  ScriptedTask task;
  Start(task.Runner());
  ASSERT_TRUE(Registered());
  EXPECT_EQ(coordinator_->count(Call::kRegister), 3);
  StopAndJoin();
  EXPECT_THAT(run_status_, IsOk());
}

TEST_F(WorkerAgentTest, AnInvalidRegistrationEndsRunAtOnce) {
  coordinator_->FailAlways(Call::kRegister,
                           absl::InvalidArgumentError("RegisterWorker: device is empty"));
  ScriptedTask task;
  Start(task.Runner());
  ASSERT_TRUE(WaitUntil([&] { return returned_.load(); }));
  EXPECT_TRUE(absl::IsInvalidArgument(run_status_)) << run_status_;
  EXPECT_EQ(coordinator_->count(Call::kRegister), 1);
}

}  // namespace
}  // namespace llava
