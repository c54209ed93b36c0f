// The scheduler with a real registry and stores but no processes: groups form from idle
// workers, each rank's shard is its share of the data plan, a lost worker restarts the
// job from its checkpoint or fails it after the restart wait, and job records survive a
// coordinator restart.
#include "coordinator/job_scheduler.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/sha256.h"
#include "test_util.h"

namespace llava {
namespace {

using std::chrono::milliseconds;

class JobSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("scheduler");
    Make();
  }
  void Make() {
    registry_ = std::make_unique<WorkerRegistry>(milliseconds(1000));
    checkpoints_ = std::move(*CheckpointStore::Open(dir_ + "/checkpoints"));
    SchedulerOptions o;
    o.restart_wait = milliseconds(5000);
    o.state_dir = dir_;
    scheduler_ = std::make_unique<JobScheduler>(o, registry_.get(), checkpoints_.get(), &rendezvous_);
  }
  std::string Register(const std::string& id) {
    v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_device("cpu");
    info.set_collective("gloo");
    info.set_model("demo");
    info.set_hidden_size(128);
    info.set_train_images(1000);
    info.set_test_images(100);
    return *registry_->Register(info, now_);
  }
  v1::HeartbeatResponse Beat(const std::string& id, const std::string& session, const v1::TaskRef& running = {}) {
    v1::HeartbeatRequest r;
    r.set_worker_id(id);
    r.set_session_id(session);
    *r.mutable_running() = running;
    auto reply = registry_->Heartbeat(r, now_);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? *reply : v1::HeartbeatResponse();
  }

  std::string dir_;
  Clock::time_point now_ = Clock::now();
  std::unique_ptr<WorkerRegistry> registry_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  RendezvousStore rendezvous_;
  std::unique_ptr<JobScheduler> scheduler_;
};

v1::SubmitJobRequest TrainRequest(int64_t world) {
  v1::SubmitJobRequest r;
  r.mutable_train()->set_world_size(world);
  r.mutable_train()->set_batch_size(3);
  r.mutable_train()->set_train_digits(50);
  r.mutable_train()->set_seed(9);
  r.mutable_train()->set_max_restarts(1);
  return r;
}

TEST_F(JobSchedulerTest, ShardsAreTheRanksSharesOfTheDataPlan) {
  const std::string s0 = Register("a"), s1 = Register("b");
  auto job = scheduler_->Submit(TrainRequest(2), now_);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job->total_steps(), 9);  // ceil(50 / 6)
  auto t0 = Beat("a", s0), t1 = Beat("b", s1);
  ASSERT_TRUE(t0.has_task() && t1.has_task());
  EXPECT_EQ(t0.task().ref().rank(), 0);
  EXPECT_EQ(t1.task().ref().rank(), 1);
  DataPlanConfig pc;
  pc.num_samples = 50;
  pc.global_batch = 6;
  pc.seed = 9;
  DataPlan plan(pc);
  v1::GetShardRequest req;
  std::vector<v1::Shard> shards;
  for (int rank = 0; rank < 2; ++rank) {
    *req.mutable_ref() = rank == 0 ? t0.task().ref() : t1.task().ref();
    req.set_epoch(0);
    auto shard = scheduler_->GetShard(req);
    ASSERT_TRUE(shard.ok()) << shard.status();
    ASSERT_EQ(shard->steps_size(), 9);
    shards.push_back(*shard);
  }
  for (int step = 0; step < 9; ++step) {
    std::vector<int64_t> joined;
    for (const auto& shard : shards) {
      for (int64_t i : shard.steps(step).index()) joined.push_back(i);
    }
    std::vector<int64_t> expected;
    for (const PlannedSample& s : plan.StepSamples(step)) expected.push_back(s.index);
    EXPECT_EQ(joined, expected) << "step " << step;
  }
  req.set_epoch(1);
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->GetShard(req).status()));
  // Only rank 0 of the running attempt may upload.
  EXPECT_TRUE(scheduler_->CheckUploader(t0.task().ref()).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->CheckUploader(t1.task().ref())));
}

TEST_F(JobSchedulerTest, LostWorkerRestartsFromTheCheckpointThenFailsWhenNoneIsLeft) {
  const std::string s0 = Register("a"), s1 = Register("b");
  auto job = scheduler_->Submit(TrainRequest(2), now_);
  ASSERT_TRUE(job.ok());
  const std::string id = job->job_id();
  Beat("a", s0);
  Beat("b", s1);
  const std::string bytes = "checkpoint at step 4";
  auto info = checkpoints_->Put(id, 4, false, bytes, Sha256Hex(bytes));
  ASSERT_TRUE(info.ok());
  scheduler_->OnCheckpointStored(*info);

  // "b" goes silent past the worker timeout; "a" keeps beating.
  v1::TaskRef a_ref;
  a_ref.set_job_id(id);
  a_ref.set_attempt(1);
  now_ += milliseconds(1500);
  v1::HeartbeatResponse abort = Beat("a", s0, a_ref);
  scheduler_->Tick(now_);
  auto status = scheduler_->Get(id, false);
  ASSERT_EQ(status->state(), v1::JOB_STATE_RESTARTING) << status->ShortDebugString();
  EXPECT_NE(status->reason().find("'b'"), std::string::npos) << status->reason();
  EXPECT_NE(status->reason().find("no heartbeat for 1500 ms"), std::string::npos) << status->reason();
  abort = Beat("a", s0, a_ref);
  ASSERT_EQ(abort.abort_size(), 1);  // the survivor is told to abandon the attempt
  Beat("a", s0);                     // ...and has stopped

  // "b" comes back under a new session: attempt 2 resumes from step 4.
  const std::string s1b = Register("b");
  scheduler_->Tick(now_);
  status = scheduler_->Get(id, false);
  ASSERT_EQ(status->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(status->attempt(), 2);
  EXPECT_EQ(status->resumed_from_step(), 4);
  auto task = Beat("b", s1b);
  ASSERT_TRUE(task.has_task());
  EXPECT_EQ(task.task().train().resume_checkpoint_id(), info->checkpoint_id());

  // A second loss exhausts max_restarts (1): the job fails and says why.
  now_ += milliseconds(1500);
  Beat("a", s0);
  scheduler_->Tick(now_);
  status = scheduler_->Get(id, false);
  EXPECT_EQ(status->state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(status->reason().find("max_restarts"), std::string::npos) << status->reason();
}

TEST_F(JobSchedulerTest, LongPollHandsOutATaskAsSoonAsItIsQueued) {
  const std::string s0 = Register("a");
  // Nothing queued: the poll returns empty at its deadline.
  auto empty = registry_->WaitForMail("a", s0, Clock::now() + milliseconds(50));
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_task());
  // A job submitted while the worker waits wakes it at once, far before the deadline.
  const auto start = Clock::now();
  std::thread submitter([&] {
    std::this_thread::sleep_for(milliseconds(100));
    v1::SubmitJobRequest r = TrainRequest(1);
    EXPECT_TRUE(scheduler_->Submit(r, Clock::now()).ok());
  });
  auto mail = registry_->WaitForMail("a", s0, Clock::now() + std::chrono::seconds(20));
  submitter.join();
  ASSERT_TRUE(mail.ok()) << mail.status();
  EXPECT_TRUE(mail->has_task());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  // A replaced session's poll ends with NOT_FOUND.
  Register("a");
  EXPECT_TRUE(absl::IsNotFound(registry_->WaitForMail("a", s0, Clock::now() + milliseconds(10)).status()));
}

TEST_F(JobSchedulerTest, AWorkerThatLeavesEndsTheAttemptAtOnceAndTheReasonSaysSo) {
  const std::string s0 = Register("a"), s1 = Register("b");
  auto job = scheduler_->Submit(TrainRequest(2), now_);
  ASSERT_TRUE(job.ok());
  Beat("a", s0);
  Beat("b", s1);
  ASSERT_TRUE(registry_->Leave("b", s1, "pod deleted").ok());
  EXPECT_TRUE(absl::IsNotFound(registry_->Leave("b", s1, "twice")));  // the session is gone
  scheduler_->Tick(now_);  // no time has passed: only the leave explains the restart
  auto status = scheduler_->Get(job->job_id(), false);
  ASSERT_EQ(status->state(), v1::JOB_STATE_RESTARTING) << status->ShortDebugString();
  EXPECT_NE(status->reason().find("worker 'b' (rank 1) was lost: it left (pod deleted)"), std::string::npos)
      << status->reason();
  auto workers = registry_->List(now_);
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].info().worker_id(), "a");
}

TEST_F(JobSchedulerTest, RestartingJobFailsAfterTheRestartWait) {
  const std::string s0 = Register("a"), s1 = Register("b");
  auto job = scheduler_->Submit(TrainRequest(2), now_);
  ASSERT_TRUE(job.ok());
  now_ += milliseconds(1500);
  Beat("a", s0);
  scheduler_->Tick(now_);
  ASSERT_EQ(scheduler_->Get(job->job_id(), false)->state(), v1::JOB_STATE_RESTARTING);
  now_ += milliseconds(900);
  Beat("a", s0);
  now_ += milliseconds(900);
  Beat("a", s0);
  scheduler_->Tick(now_);
  EXPECT_EQ(scheduler_->Get(job->job_id(), false)->state(), v1::JOB_STATE_RESTARTING);
  for (int i = 0; i < 5; ++i) {
    now_ += milliseconds(900);
    Beat("a", s0);
  }
  scheduler_->Tick(now_);
  auto status = scheduler_->Get(job->job_id(), false);
  EXPECT_EQ(status->state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(status->reason().find("not enough workers came back within 5000 ms"), std::string::npos)
      << status->reason();
}

TEST_F(JobSchedulerTest, SubmissionIsValidatedAndRecordsSurviveARestart) {
  Register("a");
  v1::SubmitJobRequest bad = TrainRequest(1);
  bad.mutable_train()->set_grad_accum(0);
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->Submit(bad, now_).status()));
  bad = TrainRequest(1);
  bad.mutable_train()->set_projector("conv");
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->Submit(bad, now_).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->Submit(TrainRequest(2), now_).status()));
  v1::SubmitJobRequest queued = TrainRequest(2);
  queued.set_wait_for_workers(true);
  auto job = scheduler_->Submit(queued, now_);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(absl::IsNotFound(scheduler_->Cancel("nope").status()));

  Make();  // a new coordinator over the same state directory
  ASSERT_TRUE(scheduler_->LoadState().ok());
  auto again = scheduler_->Get(job->job_id(), false);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->train().world_size(), 2);
  auto cancelled = scheduler_->Cancel(job->job_id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->Cancel(job->job_id()).status()));
}

}  // namespace
}  // namespace llava
