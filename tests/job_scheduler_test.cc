// The scheduler with a real registry and stores but no processes: groups form from idle
// workers, each rank's shard is its share of the data plan, a lost worker restarts the
// job from its checkpoint or fails it after the restart wait, and job records survive a
// coordinator restart; checkpoint lineage (init_from) and per-job retention with the pins
// that keep what a running attempt, an eval or a dependent job reads.
#include "coordinator/job_scheduler.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>

#include <fstream>
#include <thread>

#include "common/eval_report.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/train_checkpoint.h"
#include "test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::StatusIs;
using ::testing::HasSubstr;

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
    scheduler_ =
        std::make_unique<JobScheduler>(o, registry_.get(), checkpoints_.get(), &rendezvous_);
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
  v1::HeartbeatResponse Beat(const std::string& id, const std::string& session,
                             const v1::TaskRef& running = {}) {
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
  auto job = scheduler_->Submit(TrainRequest(2), Caller(), now_);
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
    req.set_worker_id(rank == 0 ? "a" : "b");
    req.set_session_id(rank == 0 ? s0 : s1);
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
  req.set_epoch(int64_t{1} << 62);  // found by fuzz_coordinator: overflowed before the check
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->GetShard(req).status()));
  // Only rank 0 of the running attempt may upload, from its own session, a step of the plan.
  EXPECT_TRUE(scheduler_->CheckUploader(t0.task().ref(), "a", s0, 3).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->CheckUploader(t1.task().ref(), "b", s1, 3)));
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->CheckUploader(t0.task().ref(), "b", s1, 3)));
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->CheckUploader(t0.task().ref(), "a", s0, 999)));
  // Another session may not read a rank's shard.
  req.set_worker_id("b");
  req.set_session_id(s1);
  *req.mutable_ref() = t0.task().ref();
  req.set_epoch(0);
  EXPECT_TRUE(absl::IsPermissionDenied(scheduler_->GetShard(req).status()));
}

TEST_F(JobSchedulerTest, LostWorkerRestartsFromTheCheckpointThenFailsWhenNoneIsLeft) {
  const std::string s0 = Register("a"), s1 = Register("b");
  auto job = scheduler_->Submit(TrainRequest(2), Caller(), now_);
  ASSERT_TRUE(job.ok());
  const std::string id = job->job_id();
  Beat("a", s0);
  Beat("b", s1);
  const std::string bytes = "checkpoint at step 4";
  auto info = checkpoints_->Put(id, 4, false, bytes, Sha256Hex(bytes));
  ASSERT_TRUE(info.ok());
  scheduler_->OnCheckpointStored(*info, now_);

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
  EXPECT_NE(status->reason().find("no heartbeat for 1500 ms"), std::string::npos)
      << status->reason();
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

// Issue 16 item 4: an elastic job (min_world_size < world_size) that loses a worker waits
// restart_wait for a replacement, then goes on with the ranks it has, keeping the global
// batch (the one rank's shard is the whole step of the same plan); when a worker is idle
// again it regroups at its next checkpoint, without counting a restart. Every attempt is
// listed with its group and why.
TEST_F(JobSchedulerTest, AnElasticJobShrinksAfterTheRestartWaitAndGrowsBackAtItsNextCheckpoint) {
  v1::SubmitJobRequest bad = TrainRequest(2);
  bad.mutable_train()->set_min_world_size(3);
  auto refused = scheduler_->Submit(bad, Caller(), now_);
  ASSERT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("train.min_world_size"), std::string::npos)
      << refused.status();

  const std::string s0 = Register("a"), s1 = Register("b");
  v1::SubmitJobRequest request = TrainRequest(2);
  request.mutable_train()->set_min_world_size(1);
  request.mutable_train()->set_max_restarts(3);
  auto job = scheduler_->Submit(request, Caller(), now_);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string id = job->job_id();
  v1::TaskRef a_ref = Beat("a", s0).task().ref();
  Beat("b", s1);
  const std::string bytes = "checkpoint at step 4";
  auto info = checkpoints_->Put(id, 4, false, bytes, Sha256Hex(bytes));
  ASSERT_TRUE(info.ok());
  scheduler_->OnCheckpointStored(*info, now_);

  // "b" goes silent; "a" is told to abandon attempt 1 and stops.
  now_ += milliseconds(1500);
  Beat("a", s0, a_ref);
  scheduler_->Tick(now_);
  ASSERT_EQ(scheduler_->Get(id, false)->state(), v1::JOB_STATE_RESTARTING);
  ASSERT_EQ(Beat("a", s0, a_ref).abort_size(), 1);
  Beat("a", s0);
  // Within restart_wait the job waits for a replacement...
  now_ += milliseconds(4000);
  Beat("a", s0);
  scheduler_->Tick(now_);
  ASSERT_EQ(scheduler_->Get(id, false)->state(), v1::JOB_STATE_RESTARTING);
  // ...then goes on alone from its checkpoint, with the same plan.
  now_ += milliseconds(1001);
  Beat("a", s0);
  scheduler_->Tick(now_);
  auto status = scheduler_->Get(id, false);
  ASSERT_EQ(status->state(), v1::JOB_STATE_RUNNING) << status->ShortDebugString();
  EXPECT_EQ(status->attempt(), 2);
  EXPECT_EQ(status->restarts(), 1);
  EXPECT_EQ(status->resumed_from_step(), 4);
  EXPECT_EQ(status->total_steps(), 9);  // the global batch is still 6
  ASSERT_EQ(status->worker_ids_size(), 1);
  ASSERT_EQ(status->attempts_size(), 2);
  EXPECT_EQ(status->attempts(0).world_size(), 2);
  EXPECT_EQ(status->attempts(0).why(), "submitted");
  EXPECT_NE(status->attempts(0).ended().find("'b' (rank 1) was lost"), std::string::npos)
      << status->attempts(0).ShortDebugString();
  EXPECT_EQ(status->attempts(1).world_size(), 1);
  EXPECT_EQ(status->attempts(1).from_step(), 4);
  EXPECT_NE(status->attempts(1).why().find("shrunk to 1 of 2 ranks (min_world_size 1)"),
            std::string::npos)
      << status->attempts(1).ShortDebugString();
  v1::HeartbeatResponse alone = Beat("a", s0);
  ASSERT_TRUE(alone.has_task());
  Beat("a", s0, alone.task().ref());  // running it
  EXPECT_EQ(alone.task().train().world_size(), 1);
  EXPECT_EQ(alone.task().train().spec().world_size(), 2);
  v1::GetShardRequest req;
  *req.mutable_ref() = alone.task().ref();
  req.set_worker_id("a");
  req.set_session_id(s0);
  req.set_epoch(0);
  auto shard = scheduler_->GetShard(req);
  ASSERT_TRUE(shard.ok()) << shard.status();
  DataPlanConfig pc;
  pc.num_samples = 50;
  pc.global_batch = 6;
  pc.seed = 9;
  DataPlan plan(pc);
  for (int step = 0; step < 9; ++step) {
    std::vector<int64_t> expected,
        got(shard->steps(step).index().begin(), shard->steps(step).index().end());
    for (const PlannedSample& s : plan.StepSamples(step)) expected.push_back(s.index);
    EXPECT_EQ(got, expected) << "step " << step;
  }

  // "b" comes back: nothing changes until the next checkpoint, where the job regroups.
  const std::string s1b = Register("b");
  scheduler_->Tick(now_);
  EXPECT_EQ(scheduler_->Get(id, false)->attempt(), 2);
  const std::string later = "checkpoint at step 6";
  auto info6 = checkpoints_->Put(id, 6, false, later, Sha256Hex(later));
  ASSERT_TRUE(info6.ok());
  scheduler_->OnCheckpointStored(*info6, now_);
  status = scheduler_->Get(id, false);
  ASSERT_EQ(status->state(), v1::JOB_STATE_RESTARTING) << status->ShortDebugString();
  EXPECT_NE(status->reason().find("regrouped at the checkpoint of step 6 to grow"),
            std::string::npos)
      << status->reason();
  ASSERT_EQ(Beat("a", s0, alone.task().ref()).abort_size(), 1);
  Beat("a", s0);
  scheduler_->Tick(now_);  // no restart_wait: the group it regrouped for is idle
  status = scheduler_->Get(id, false);
  ASSERT_EQ(status->state(), v1::JOB_STATE_RUNNING) << status->ShortDebugString();
  EXPECT_EQ(status->attempt(), 3);
  EXPECT_EQ(status->restarts(), 1);  // growing is not a restart
  EXPECT_EQ(status->resumed_from_step(), 6);
  EXPECT_EQ(status->worker_ids_size(), 2);
  ASSERT_EQ(status->attempts_size(), 3);
  EXPECT_EQ(status->attempts(2).world_size(), 2);
  EXPECT_EQ(status->attempts(2).why(), "grew from 1 to 2 ranks at the checkpoint of step 6");
  EXPECT_NE(status->attempts(1).ended().find("regrouped"), std::string::npos);
  // The attempts survive a coordinator restart with the record.
  Make();
  ASSERT_TRUE(scheduler_->LoadState().ok());
  status = scheduler_->Get(id, false);
  ASSERT_EQ(status->attempts_size(), 3);
  EXPECT_EQ(status->attempts(2).ended(), "the coordinator restarted");
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
    EXPECT_TRUE(scheduler_->Submit(r, Caller(), Clock::now()).ok());
  });
  auto mail = registry_->WaitForMail("a", s0, Clock::now() + std::chrono::seconds(20));
  submitter.join();
  ASSERT_TRUE(mail.ok()) << mail.status();
  EXPECT_TRUE(mail->has_task());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  // A replaced session's poll ends with NOT_FOUND (the old one silent past the timeout).
  now_ = Clock::now() + milliseconds(1500);
  Register("a");
  EXPECT_TRUE(
      absl::IsNotFound(registry_->WaitForMail("a", s0, Clock::now() + milliseconds(10)).status()));
}

TEST_F(JobSchedulerTest, AWorkerThatLeavesEndsTheAttemptAtOnceAndTheReasonSaysSo) {
  const std::string s0 = Register("a"), s1 = Register("b");
  auto job = scheduler_->Submit(TrainRequest(2), Caller(), now_);
  ASSERT_TRUE(job.ok());
  Beat("a", s0);
  Beat("b", s1);
  v1::TaskRef survivor;
  survivor.set_job_id(job->job_id());
  survivor.set_attempt(1);
  survivor.set_rank(0);
  ASSERT_TRUE(registry_->Leave("b", s1, "pod deleted").ok());
  EXPECT_TRUE(absl::IsNotFound(registry_->Leave("b", s1, "twice")));  // the session is gone
  // What LeaveWorker does after the registry took the leave; no Tick: the attempt ends
  // in the call itself.
  scheduler_->OnWorkerLeft("b", now_);
  auto status = scheduler_->Get(job->job_id(), false);
  ASSERT_EQ(status->state(), v1::JOB_STATE_RESTARTING) << status->ShortDebugString();
  EXPECT_NE(status->reason().find("worker 'b' (rank 1) was lost: it left (pod deleted)"),
            std::string::npos)
      << status->reason();
  // The leaver then closes its sockets and the survivor's collective fails: that report
  // is about an attempt that has already ended and changes nothing.
  v1::TaskResultRequest failed;
  failed.set_worker_id("a");
  failed.set_session_id(s0);
  *failed.mutable_ref() = survivor;
  failed.set_error("gloo all-reduce failed: Connection closed by peer");
  failed.set_retryable(true);
  EXPECT_THAT(scheduler_->OnTaskResult(failed),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("attempt 1 rank 0 is not running")));
  auto after = scheduler_->Get(job->job_id(), false);
  EXPECT_EQ(after->reason(), status->reason());
  EXPECT_EQ(after->restarts(), status->restarts());
  auto workers = registry_->List(now_);
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].info().worker_id(), "a");
}

TEST_F(JobSchedulerTest, RestartingJobFailsAfterTheRestartWait) {
  const std::string s0 = Register("a"), s1 = Register("b");
  auto job = scheduler_->Submit(TrainRequest(2), Caller(), now_);
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
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->Submit(bad, Caller(), now_).status()));
  bad = TrainRequest(1);
  bad.mutable_train()->set_projector("conv");
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->Submit(bad, Caller(), now_).status()));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(scheduler_->Submit(TrainRequest(2), Caller(), now_).status()));
  v1::SubmitJobRequest queued = TrainRequest(2);
  queued.set_wait_for_workers(true);
  auto job = scheduler_->Submit(queued, Caller(), now_);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(absl::IsNotFound(scheduler_->Cancel("nope", Caller()).status()));

  Make();  // a new coordinator over the same state directory
  ASSERT_TRUE(scheduler_->LoadState().ok());
  auto again = scheduler_->Get(job->job_id(), false);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->train().world_size(), 2);
  auto cancelled = scheduler_->Cancel(job->job_id(), Caller());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->Cancel(job->job_id(), Caller()).status()));
}

// Issue 15, finding 1: the poison job (its global batch overflowed to 0 and a CHECK took
// the coordinator down) and other absurd values are refused at the door, naming the field.
TEST_F(JobSchedulerTest, AbsurdValuesAreRefusedAtTheDoorNamingTheField) {
  Register("a");
  struct Case {
    const char* field;
    std::function<void(v1::TrainSpec*)> set;
  };
  const std::vector<Case> cases = {
      {"train.batch_size",
       [](v1::TrainSpec* t) {
         t->set_batch_size(4611686018427387904LL);
         t->set_grad_accum(4);
       }},
      {"global batch",
       [](v1::TrainSpec* t) {
         t->set_batch_size(65536);
         t->set_grad_accum(4096);
       }},
      {"train.batch_size", [](v1::TrainSpec* t) { t->set_batch_size(int64_t{1} << 62); }},
      {"train.epochs", [](v1::TrainSpec* t) { t->set_epochs(int64_t{1} << 62); }},
      {"train.world_size", [](v1::TrainSpec* t) { t->set_world_size(INT64_MAX); }},
      {"train.projector_hidden",
       [](v1::TrainSpec* t) {
         t->set_projector("mlp2x_gelu");
         t->set_projector_hidden(INT64_MAX);
       }},
      {"train.image_tokens", [](v1::TrainSpec* t) { t->set_image_tokens(1000000); }},
      {"train.lr", [](v1::TrainSpec* t) { t->set_lr(1e308); }},
      {"train.lr", [](v1::TrainSpec* t) { t->set_lr(std::nan("")); }},
      {"train.weight_decay", [](v1::TrainSpec* t) { t->set_weight_decay(-1); }},
      {"train.warmup_ratio", [](v1::TrainSpec* t) { t->set_warmup_ratio(5); }},
      {"train.max_restarts", [](v1::TrainSpec* t) { t->set_max_restarts(1000000000); }},
      {"train.checkpoint_every_steps", [](v1::TrainSpec* t) { t->set_checkpoint_every_steps(-5); }},
      {"train.train_digits", [](v1::TrainSpec* t) { t->set_train_digits(-7); }},
      {"train.max_steps", [](v1::TrainSpec* t) { t->set_max_steps(int64_t{1} << 40); }},
      {"train.questions",
       [](v1::TrainSpec* t) {
         for (int i = 0; i < 65; ++i) t->add_questions("Which?");
       }},
      {"train.questions[0]",
       [](v1::TrainSpec* t) { t->add_questions("What digit?\ninjected log line"); }},
      {"train.questions[0]", [](v1::TrainSpec* t) { t->add_questions(std::string(10000, 'q')); }},
      {"train.answer_templates[0]", [](v1::TrainSpec* t) { t->add_answer_templates(""); }},
      {"train.model", [](v1::TrainSpec* t) { t->set_model(std::string(7 << 20, 'm')); }},
      {"augment shift", [](v1::TrainSpec* t) { t->set_augment_shift(1e9); }},
      {"augment rotate", [](v1::TrainSpec* t) { t->set_augment_rotate(std::nan("")); }},
      {"augment scale", [](v1::TrainSpec* t) { t->set_augment_scale(-0.5); }},
  };
  for (const Case& c : cases) {
    v1::SubmitJobRequest r = TrainRequest(1);
    r.set_wait_for_workers(true);
    c.set(r.mutable_train());
    auto job = scheduler_->Submit(r, Caller(), now_);
    ASSERT_FALSE(job.ok()) << c.field;
    EXPECT_TRUE(absl::IsInvalidArgument(job.status())) << job.status();
    EXPECT_NE(job.status().message().find(c.field), std::string::npos) << job.status();
  }
  EXPECT_TRUE(scheduler_->List().empty());  // nothing was queued
  v1::SubmitJobRequest eval;
  eval.mutable_eval()->set_checkpoint("../../etc/passwd");
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->Submit(eval, Caller(), now_).status()));
  eval.mutable_eval()->set_checkpoint("train-000001");
  eval.mutable_eval()->set_max_new_tokens(int64_t{1} << 40);
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->Submit(eval, Caller(), now_).status()));
}

// Issue 15, finding 1: a persisted record that no longer validates (written before the
// bounds, or tampered with) is set aside at load, never crashes the coordinator.
TEST_F(JobSchedulerTest, ARecordThatNoLongerValidatesIsSetAsideAtLoad) {
  ASSERT_TRUE(MakeDirs(dir_ + "/jobs").ok());
  const std::string poison =
      R"({"jobId":"train-000007","kind":"JOB_KIND_TRAIN","state":"JOB_STATE_QUEUED",)"
      R"("train":{"batchSize":"4611686018427387904","gradAccum":"4","worldSize":"1"}})";
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/jobs/train-000007.json", poison).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/jobs/garbage.json", "{not json").ok());
  Make();
  ASSERT_TRUE(scheduler_->LoadState().ok());
  EXPECT_TRUE(scheduler_->List().empty());
  EXPECT_TRUE(FileExists(dir_ + "/jobs/rejected/train-000007.json"));
  auto reason = ReadFile(dir_ + "/jobs/rejected/train-000007.json.reason");
  ASSERT_TRUE(reason.ok());
  EXPECT_NE(reason->find("train.batch_size"), std::string::npos) << *reason;
  EXPECT_TRUE(FileExists(dir_ + "/jobs/rejected/garbage.json.reason"));
  // A worker registering no longer meets a job that would abort the coordinator, and the
  // set-aside id is never handed out again.
  const std::string s0 = Register("a");
  scheduler_->Tick(now_);
  auto job = scheduler_->Submit(TrainRequest(1), Caller(), now_);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->job_id(), "train-000008");
}

// Issue 15, finding 3: OK means on disk; a record that cannot be written queues nothing,
// and an id once handed out (or spent) is never handed out again.
TEST_F(JobSchedulerTest, SubmitIsDurableOrRefusedAndIdsAreNeverReused) {
  Register("a");
  auto first = scheduler_->Submit(TrainRequest(1), Caller(), now_);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(FileExists(dir_ + "/jobs/" + first->job_id() + ".json"));

  // Files past 64 bytes cannot be written (as with a full disk): the counter fits, the
  // record does not.
  signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit tiny = old;
  tiny.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tiny), 0);
  auto refused = scheduler_->Submit(TrainRequest(1), Caller(), now_);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("nothing queued"), std::string::npos)
      << refused.status();
  EXPECT_EQ(scheduler_->List().size(), 1u);

  // The finished first job is deleted; a new coordinator still never reuses either id.
  ASSERT_TRUE(scheduler_->Cancel(first->job_id(), Caller()).ok());
  ASSERT_TRUE(scheduler_->Delete(first->job_id(), Caller()).ok());
  EXPECT_FALSE(FileExists(dir_ + "/jobs/" + first->job_id() + ".json"));
  Make();
  ASSERT_TRUE(scheduler_->LoadState().ok());
  EXPECT_TRUE(scheduler_->List().empty());
  Register("b");
  auto next = scheduler_->Submit(TrainRequest(1), Caller(), now_);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->job_id(), "train-000003");
}

// Issue 15, finding 4: a checkpoint that no longer verifies is quarantined and the job
// resumes from the newest one that does; only the newest three are kept.
TEST_F(JobSchedulerTest, ACorruptCheckpointIsQuarantinedAndTheJobFallsBack) {
  const std::string s0 = Register("a");
  auto job = scheduler_->Submit(TrainRequest(1), Caller(), now_);
  ASSERT_TRUE(job.ok());
  const std::string id = job->job_id();
  Beat("a", s0);
  for (int step : {2, 4, 6, 8}) {
    const std::string bytes = "checkpoint at step " + std::to_string(step);
    auto info = checkpoints_->Put(id, step, false, bytes, Sha256Hex(bytes));
    ASSERT_TRUE(info.ok()) << info.status();
    scheduler_->OnCheckpointStored(*info, now_);
  }
  EXPECT_EQ(checkpoints_->List(id).size(), 3u);  // step 2 pruned
  EXPECT_FALSE(checkpoints_->Find(CheckpointStore::MakeId(id, 2)).ok());
  // The newest one is damaged on disk.
  const std::string newest =
      dir_ + "/checkpoints/" + CheckpointStore::MakeId(id, 8) + ".safetensors";
  ASSERT_TRUE(WriteFileAtomic(newest, "checkpoint at step 9").ok());
  // The attempt ends (its worker is lost); the next one resumes from step 6.
  now_ += milliseconds(1500);
  scheduler_->Tick(now_);
  ASSERT_EQ(scheduler_->Get(id, false)->state(), v1::JOB_STATE_RESTARTING);
  const std::string s1 = Register("a");
  scheduler_->Tick(now_);
  auto status = scheduler_->Get(id, false);
  ASSERT_EQ(status->state(), v1::JOB_STATE_RUNNING) << status->ShortDebugString();
  EXPECT_EQ(status->resumed_from_step(), 6);
  auto task = Beat("a", s1);
  ASSERT_TRUE(task.has_task());
  EXPECT_EQ(task.task().train().resume_checkpoint_id(), CheckpointStore::MakeId(id, 6));
  ASSERT_EQ(status->quarantined_checkpoints_size(), 1);
  EXPECT_NE(status->quarantined_checkpoints(0).find("step-000008"), std::string::npos);
  EXPECT_TRUE(FileExists(newest + ".quarantined"));
  EXPECT_FALSE(FileExists(newest));
  // A new coordinator remembers why.
  Make();
  ASSERT_TRUE(scheduler_->LoadState().ok());
  EXPECT_EQ(scheduler_->Get(id, false)->quarantined_checkpoints_size(), 1);
  EXPECT_EQ(checkpoints_->Find(id)->step(), 6);
}

// Issue 15, finding 2: uploads, shards and rendezvous keys belong to the session holding
// the rank now; cancel and delete to the submitter or an admin.
TEST_F(JobSchedulerTest, OnlyTheHoldersOfAnAttemptTouchItAndOnlyTheSubmitterManagesTheJob) {
  const std::string s0 = Register("a"), s1 = Register("b");
  EXPECT_EQ(s0.size(), 32u);  // 128 random bits
  EXPECT_NE(s0, s1);
  Caller alice{"alice", kRoleClient}, bob{"bob", kRoleClient},
      root{"root", kRoleAdmin | kRoleClient};
  auto job = scheduler_->Submit(TrainRequest(2), alice, now_);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->submitter(), "alice");
  const std::string prefix = job->job_id() + "/attempt-1/";
  EXPECT_TRUE(scheduler_->CheckRendezvousAccess(prefix + "rank0", "a", s0).ok());
  EXPECT_TRUE(
      absl::IsPermissionDenied(scheduler_->CheckRendezvousAccess(prefix + "rank0", "a", "w0#1")));
  EXPECT_TRUE(
      absl::IsPermissionDenied(scheduler_->CheckRendezvousAccess(prefix + "rank0", "c", s0)));
  // Keys of a later attempt cannot be set in advance.
  EXPECT_TRUE(absl::IsPermissionDenied(
      scheduler_->CheckRendezvousAccess(job->job_id() + "/attempt-2/nccl_unique_id", "a", s0)));
  EXPECT_TRUE(absl::IsPermissionDenied(scheduler_->CheckRendezvousAccess("no-slash", "a", s0)));
  v1::TaskRef rank0;
  rank0.set_job_id(job->job_id());
  rank0.set_attempt(1);
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->CheckUploader(rank0, "b", s1, 1)));

  EXPECT_TRUE(absl::IsPermissionDenied(scheduler_->Cancel(job->job_id(), bob).status()));
  EXPECT_EQ(scheduler_->Get(job->job_id(), false)->state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(absl::IsFailedPrecondition(scheduler_->Delete(job->job_id(), alice)));  // running
  ASSERT_TRUE(scheduler_->Cancel(job->job_id(), alice).ok());
  EXPECT_TRUE(
      absl::IsPermissionDenied(scheduler_->CheckRendezvousAccess(prefix + "rank0", "a", s0)));
  EXPECT_TRUE(absl::IsPermissionDenied(scheduler_->Delete(job->job_id(), bob)));
  EXPECT_TRUE(scheduler_->Delete(job->job_id(), root).ok());
  EXPECT_TRUE(absl::IsNotFound(scheduler_->Get(job->job_id(), false).status()));
}

// Issue 16 item 5: the ranks of an eval attempt get what a group needs to meet (they share
// one download of the projector over it), and its keys go when the job ends.
TEST_F(JobSchedulerTest, AnEvalAttemptsRanksMeetAsAGroupWhoseKeysGoAtTheEnd) {
  const std::string s0 = Register("a"), s1 = Register("b");
  const std::string bytes = "projector checkpoint";
  auto info = checkpoints_->Put("train-000042", 1, true, bytes, Sha256Hex(bytes));
  ASSERT_TRUE(info.ok()) << info.status();
  v1::SubmitJobRequest request;
  request.mutable_eval()->set_checkpoint(info->checkpoint_id());
  request.mutable_eval()->set_eval_digits(10);
  auto job = scheduler_->Submit(request, Caller(), now_);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::JOB_STATE_RUNNING) << job->ShortDebugString();
  const std::string prefix = job->job_id() + "/attempt-1/";
  std::vector<v1::Task> tasks = {Beat("a", s0).task(), Beat("b", s1).task()};
  for (int rank = 0; rank < 2; ++rank) {
    const v1::EvalTask& t = tasks[rank].eval();
    EXPECT_EQ(tasks[rank].ref().rank(), rank);
    EXPECT_EQ(t.world_size(), 2);
    EXPECT_EQ(t.rendezvous_prefix(), prefix);
    EXPECT_EQ(t.collective_timeout_ms(), 60000);
    EXPECT_EQ(t.begin(), rank * 5);
    EXPECT_EQ(t.end(), rank * 5 + 5);
  }
  ASSERT_TRUE(scheduler_->CheckRendezvousAccess(prefix + "eval/lacks-projector/0", "a", s0).ok());
  ASSERT_TRUE(rendezvous_.Set(prefix + "eval/lacks-projector/0", "1").ok());
  const std::vector<std::string> questions(tasks[0].eval().spec().questions().begin(),
                                           tasks[0].eval().spec().questions().end());
  for (int rank = 0; rank < 2; ++rank) {
    v1::TaskResultRequest result;
    result.set_worker_id(rank == 0 ? "a" : "b");
    result.set_session_id(rank == 0 ? s0 : s1);
    *result.mutable_ref() = tasks[rank].ref();
    result.set_ok(true);
    result.set_eval_report_json(EvalReport(questions).ToJson());
    ASSERT_TRUE(scheduler_->OnTaskResult(result).ok());
  }
  EXPECT_EQ(scheduler_->Get(job->job_id(), false)->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(rendezvous_.size(), 0u);
}

// Issue 15, finding 5: lists come in pages; finished jobs expire.
TEST_F(JobSchedulerTest, ListsArePagedAndFinishedJobsExpire) {
  SchedulerOptions o;
  o.state_dir = dir_;
  o.finished_job_ttl = milliseconds(10000);
  scheduler_ = std::make_unique<JobScheduler>(o, registry_.get(), checkpoints_.get(), &rendezvous_);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    v1::SubmitJobRequest r = TrainRequest(1);
    r.set_wait_for_workers(true);
    ids.push_back(scheduler_->Submit(r, Caller(), now_)->job_id());
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    std::string next;
    auto page = scheduler_->List(2, token, &next);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->size(), 2u);
    for (const auto& s : *page) seen.push_back(s.job_id());
    token = next;
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, 3);
  std::string next;
  EXPECT_TRUE(scheduler_->List(0, "", &next).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->List(5000, "", &next).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->List(2, "bogus\ntoken", &next).status()));

  ASSERT_TRUE(scheduler_->Cancel(ids[0], Caller()).ok());
  scheduler_->Tick(Clock::now() + milliseconds(5000));
  EXPECT_TRUE(scheduler_->Get(ids[0], false).ok());
  scheduler_->Tick(Clock::now() + milliseconds(20000));
  EXPECT_TRUE(absl::IsNotFound(scheduler_->Get(ids[0], false).status()));
  EXPECT_EQ(scheduler_->List().size(), 4u);
}

// Issue 15, finding 5: the rendezvous store frees what an attempt wrote and bounds what
// one attempt may write; waits end at shutdown.
TEST(RendezvousStoreTest, QuotasPerAttemptAndEverythingFreedAtTheEnd) {
  RendezvousStore::Limits limits;
  limits.max_scope_bytes = 4096;
  limits.max_scope_keys = 3;
  RendezvousStore store(limits);
  ASSERT_TRUE(store.Set("train-000001/attempt-1/a", std::string(1000, 'x')).ok());
  ASSERT_TRUE(store.Set("train-000001/attempt-1/b", std::string(1000, 'x')).ok());
  EXPECT_TRUE(
      absl::IsResourceExhausted(store.Set("train-000001/attempt-1/c", std::string(3000, 'x'))));
  ASSERT_TRUE(store.Set("train-000001/attempt-1/c", "small").ok());
  EXPECT_TRUE(absl::IsResourceExhausted(store.Set("train-000001/attempt-1/d", "one too many")));
  EXPECT_TRUE(store.Set("train-000002/attempt-1/a", "another attempt has its own quota").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(store.Set(std::string(600, 'k'), "")));
  store.ErasePrefix("train-000001/attempt-1/");
  store.ErasePrefix("train-000002/");
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.bytes(), 0);
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(100));
    store.Shutdown();
  });
  auto got = store.Get("train-000003/attempt-1/x", std::chrono::hours(1));
  stopper.join();
  EXPECT_TRUE(absl::IsUnavailable(got.status())) << got.status();
}

}  // namespace
}  // namespace llava

namespace llava {
namespace {

// A real checkpoint file (the scheduler reads its projector config for init_from).
std::string ProjectorCheckpoint(ProjectorType type, uint64_t seed) {
  ProjectorConfig config;
  config.type = type;
  config.output_dim = 128;
  Projector projector(config, seed);
  auto bytes = SerializeTrainCheckpoint(projector, nullptr, "{\"step\":5}", "demo");
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

TEST_F(JobSchedulerTest, InitFromIsResolvedVerifiedMatchedAndHeldUntilTheJobEnds) {
  const std::string source = "train-000077";
  checkpoints_->SetRetention(source, Retention{1, 0});
  for (int64_t step : {5, 10}) {
    const std::string bytes = ProjectorCheckpoint(ProjectorType::kLinear, step);
    ASSERT_TRUE(checkpoints_->Put(source, step, false, bytes, Sha256Hex(bytes)).ok());
  }
  // Refused at the door: unknown, a projector of another kind, a malformed reference.
  v1::SubmitJobRequest bad = TrainRequest(1);
  bad.mutable_train()->set_init_from("train-000078");
  bad.set_wait_for_workers(true);
  auto refused = scheduler_->Submit(bad, Caller(), now_);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("train.init_from"), std::string::npos);
  bad.mutable_train()->set_init_from(source);
  bad.mutable_train()->set_projector("mlp2x_gelu");
  refused = scheduler_->Submit(bad, Caller(), now_);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("does not fit"), std::string::npos) << refused.status();
  bad.mutable_train()->set_init_from("train-000077/../x");
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->Submit(bad, Caller(), now_).status()));

  // A job id means its newest checkpoint that verifies, resolved into the spec.
  const std::string s0 = Register("a");
  v1::SubmitJobRequest r = TrainRequest(1);
  r.mutable_train()->set_init_from(source);
  auto job = scheduler_->Submit(r, Caller(), now_);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string held = CheckpointStore::MakeId(source, 10);
  EXPECT_EQ(job->train().init_from(), held);
  EXPECT_EQ(job->train().keep_last(), 3);  // the store's default
  auto task = Beat("a", s0);
  ASSERT_TRUE(task.has_task());
  EXPECT_EQ(task.task().train().spec().init_from(), held);
  EXPECT_TRUE(task.task().train().resume_checkpoint_id().empty());

  // The source job moves on (keep_last 1) but the checkpoint this job starts from stays...
  const std::string newer = ProjectorCheckpoint(ProjectorType::kLinear, 15);
  ASSERT_TRUE(checkpoints_->Put(source, 15, false, newer, Sha256Hex(newer)).ok());
  EXPECT_TRUE(checkpoints_->Find(held).ok());
  EXPECT_EQ(checkpoints_->List(source).size(), 2u);
  // ...until the job ends.
  ASSERT_TRUE(scheduler_->Cancel(job->job_id(), Caller()).ok());
  EXPECT_FALSE(checkpoints_->Find(held).ok());
  EXPECT_EQ(checkpoints_->List(source).size(), 1u);
}

TEST_F(JobSchedulerTest, InitFromAJobSkipsADamagedCheckpointButAnIdMustVerify) {
  const std::string source = "train-000088";
  for (int64_t step : {5, 10}) {
    const std::string bytes = ProjectorCheckpoint(ProjectorType::kLinear, step);
    ASSERT_TRUE(checkpoints_->Put(source, step, false, bytes, Sha256Hex(bytes)).ok());
  }
  ASSERT_TRUE(
      WriteFileAtomic(dir_ + "/checkpoints/" + CheckpointStore::MakeId(source, 10) + ".safetensors",
                      "damaged")
          .ok());
  v1::SubmitJobRequest r = TrainRequest(1);
  r.set_wait_for_workers(true);
  r.mutable_train()->set_init_from(CheckpointStore::MakeId(source, 10));
  auto refused = scheduler_->Submit(r, Caller(), now_);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("quarantined"), std::string::npos) << refused.status();
  r.mutable_train()->set_init_from(source);
  auto job = scheduler_->Submit(r, Caller(), now_);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->train().init_from(), CheckpointStore::MakeId(source, 5));
}

TEST_F(JobSchedulerTest, PerJobKeepLastAndTheResumePinAndTheEvalPin) {
  const std::string s0 = Register("a");
  v1::SubmitJobRequest r = TrainRequest(1);
  r.mutable_train()->set_keep_last(1);
  auto job = scheduler_->Submit(r, Caller(), now_);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string id = job->job_id();
  Beat("a", s0);
  auto put = [&](int64_t step) {
    const std::string bytes = "checkpoint at step " + std::to_string(step);
    auto info = checkpoints_->Put(id, step, false, bytes, Sha256Hex(bytes));
    ASSERT_TRUE(info.ok()) << info.status();
    scheduler_->OnCheckpointStored(*info, now_);
  };
  put(2);
  put(4);
  EXPECT_EQ(checkpoints_->List(id).size(), 1u);  // keep_last 1
  // An eval queued on step 4 holds it while training goes on.
  v1::SubmitJobRequest eval;
  eval.mutable_eval()->set_checkpoint(CheckpointStore::MakeId(id, 4));
  eval.set_wait_for_workers(true);
  auto eval_job = scheduler_->Submit(eval, Caller(), now_);
  ASSERT_TRUE(eval_job.ok()) << eval_job.status();
  put(6);
  EXPECT_TRUE(checkpoints_->Find(CheckpointStore::MakeId(id, 4)).ok());
  // The worker is lost; attempt 2 resumes from step 6, which stays while it runs...
  now_ += milliseconds(1500);
  scheduler_->Tick(now_);
  const std::string s1 = Register("a");
  scheduler_->Tick(now_);
  ASSERT_EQ(scheduler_->Get(id, false)->resumed_from_step(), 6);
  ASSERT_TRUE(scheduler_->Cancel(eval_job->job_id(), Caller()).ok());
  EXPECT_FALSE(checkpoints_->Find(CheckpointStore::MakeId(id, 4)).ok());  // released, pruned
  // ...even past keep_last, until the attempt has stored a newer one.
  EXPECT_TRUE(checkpoints_->Find(CheckpointStore::MakeId(id, 6)).ok());
  put(8);
  EXPECT_EQ(checkpoints_->List(id).size(), 1u);
  EXPECT_EQ(checkpoints_->Find(id)->step(), 8);
  // Bounds.
  for (int64_t keep : {0, 101}) {
    v1::SubmitJobRequest b = TrainRequest(1);
    b.mutable_train()->set_keep_last(keep);
    auto s = scheduler_->Submit(b, Caller(), now_);
    EXPECT_TRUE(absl::IsInvalidArgument(s.status()));
    EXPECT_NE(s.status().message().find("train.keep_last"), std::string::npos) << s.status();
  }
  v1::SubmitJobRequest b = TrainRequest(1);
  b.mutable_train()->set_keep_best(-1);
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler_->Submit(b, Caller(), now_).status()));
}

}  // namespace
}  // namespace llava
