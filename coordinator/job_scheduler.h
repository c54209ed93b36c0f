// The coordinator's jobs: validation at submission, forming a group of idle workers for
// each attempt (ranks, rendezvous prefix, shards of the data plan), progress from rank
// 0's heartbeats, eval shards gathered into one report, restarts from the newest
// checkpoint that verifies after a lost worker or failed rank, cancellation and deletion
// by the submitter (or an admin), expiry of finished jobs, and job records persisted
// under <state_dir>/jobs so that a restarted coordinator resumes its jobs.
//
// Durability: Submit answers OK only once the job's record and the id counter
// (<state_dir>/next_job_id) are on disk, so an acknowledged job survives a restart and
// an id is never handed out twice. A record that no longer parses or validates at load is
// moved to <state_dir>/jobs/rejected/ with a .reason file beside it.
//
// Trust: every method that takes a TaskRef, a key or a session checks it against the
// job's current attempt and the caller's session; nothing a caller sends reaches a CHECK.
//
// Thread-safe: one mutex (taken before the registry's and the stores', never after);
// Tick() runs on the server's scheduler thread; watchers wait on a condition variable.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "common/data_plan.h"
#include "common/net/caller.h"
#include "coordinator/checkpoint_store.h"
#include "coordinator/job_tensorboard.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/worker_registry.h"
#include "protos/llava.pb.h"

namespace llava {

struct SchedulerOptions {
  // How long a job whose attempt failed waits for enough workers before it fails.
  std::chrono::milliseconds restart_wait{60000};
  // Handed to workers: a collective that takes longer fails the attempt.
  std::chrono::milliseconds collective_timeout{60000};
  // Where job records live; empty: kept in memory only.
  std::string state_dir;
  // Finished jobs' records are forgotten this long after their last change (0: kept
  // until deleted).
  std::chrono::milliseconds finished_job_ttl{std::chrono::hours(24 * 7)};
  // Job records held at once (queued, running and finished); a submission beyond is
  // RESOURCE_EXHAUSTED until finished jobs are deleted or expire.
  int64_t max_jobs = 10000;
  // TensorBoard event files of the jobs go under <tensorboard_dir>/<job id>/ (see
  // job_tensorboard.h); empty: none.
  std::string tensorboard_dir;
};

class JobScheduler {
 public:
  JobScheduler(SchedulerOptions options, WorkerRegistry* registry, CheckpointStore* checkpoints,
               RendezvousStore* rendezvous);

  // Reads the job records of an earlier run: unfinished jobs restart from their last
  // checkpoint once workers are available. Records that do not validate are set aside.
  absl::Status LoadState();

  absl::StatusOr<v1::JobStatus> Submit(const v1::SubmitJobRequest& request, const Caller& caller,
                                       Clock::time_point now);
  absl::StatusOr<v1::JobStatus> Get(const std::string& job_id, bool include_history) const;
  // Oldest first, `page_size` at most, after the page token (the last job of the
  // previous page); `*next_page_token` empty on the last page.
  absl::StatusOr<std::vector<v1::JobStatus>> List(int64_t page_size, const std::string& page_token,
                                                  std::string* next_page_token) const;
  // Every job, oldest first (metrics).
  std::vector<v1::JobStatus> List() const;
  absl::StatusOr<v1::JobStatus> Cancel(const std::string& job_id, const Caller& caller);
  absl::Status Delete(const std::string& job_id, const Caller& caller);
  // Waits until the job changes after `*version` (or `deadline`, or Shutdown()); returns
  // its status and updates `*version`. NOT_FOUND for an unknown job; DEADLINE_EXCEEDED on
  // timeout; UNAVAILABLE once shutting down.
  absl::StatusOr<v1::JobStatus> WaitForChange(const std::string& job_id, int64_t* version,
                                              Clock::time_point deadline);
  // Ends every wait (the coordinator is stopping).
  void Shutdown();

  // Metrics and eval progress carried by a heartbeat (after the registry accepted it).
  void OnHeartbeat(const v1::HeartbeatRequest& request);
  absl::Status OnTaskResult(const v1::TaskResultRequest& request);
  // PERMISSION_DENIED unless (worker_id, session_id) holds `request.ref()`.
  absl::StatusOr<v1::Shard> GetShard(const v1::GetShardRequest& request) const;
  // OK only for the session holding rank 0 of the job's running attempt, at a step of
  // the job's plan.
  absl::Status CheckUploader(const v1::TaskRef& ref, const std::string& worker_id,
                             const std::string& session_id, int64_t step) const;
  // OK only for a key of a running attempt in which the session holds a rank.
  absl::Status CheckRendezvousAccess(const std::string& key, const std::string& worker_id,
                                     const std::string& session_id) const;
  // Records the job's newest checkpoint; an elastic job below its world_size regroups
  // there when workers are idle.
  void OnCheckpointStored(const v1::CheckpointInfo& info, Clock::time_point now);
  // The coordinator could not store the attempt's checkpoint (disk full, I/O error): the
  // attempt ends and the job fails, since a restart would redo the same steps into the
  // same failure.
  void OnCheckpointStoreFailed(const v1::TaskRef& ref, const absl::Status& error);

  // Starts attempts that can start, notices lost workers, fails jobs that waited too
  // long, forgets expired finished jobs.
  void Tick(Clock::time_point now);
  // A worker left the registry (LeaveWorker): the attempts it held a rank of end now,
  // with its reason, before its peers' collectives fail on its closed sockets and report
  // a less telling one.
  void OnWorkerLeft(const std::string& worker_id, Clock::time_point now);
  // Writes every job record (steps and metrics are otherwise written only at state
  // changes and checkpoints): the coordinator's last act before it exits.
  void PersistAll() const;

 private:
  struct Member {
    std::string worker_id;
    std::string session_id;
    bool done = false;
    int64_t eval_images_done = 0;
    std::string eval_report_json;
  };
  struct Job {
    v1::JobStatus status;
    int64_t seq = 0;              // the id's number: submission order
    std::vector<Member> members;  // by rank, for the current attempt
    std::unique_ptr<DataPlan> plan;
    int64_t eval_begin_end[2] = {0, 0};
    std::string eval_checkpoint_sha256;  // the file the eval tasks read
    Clock::time_point waiting_since;
    Clock::time_point finished_at;
    int64_t version = 0;
    // An elastic job regrouping at a checkpoint to grow: the ranks it had, and the ranks
    // the idle workers then allowed (0: not growing).
    int64_t grow_from = 0;
    int64_t grow_to = 0;
  };

  bool Terminal(const Job& job) const;
  void Changed(Job& job, bool persist);
  absl::Status Persist(const Job& job) const;
  absl::Status PersistNextId(int64_t next) const;
  v1::JobStatus Snapshot(const Job& job) const;
  absl::Status ValidateAgainstWorkers(const v1::SubmitJobRequest& request,
                                      Clock::time_point now) const;
  void TryStart(Job& job, Clock::time_point now);
  // The group a training job starts its next attempt on now (at most its world_size;
  // fewer for an elastic job that waited restart_wait), and why; an empty group: not yet.
  std::vector<WorkerRegistry::Candidate> TrainGroup(const Job& job,
                                                    std::vector<WorkerRegistry::Candidate> idle,
                                                    Clock::time_point now, std::string* why) const;
  void StartTrain(Job& job, std::vector<WorkerRegistry::Candidate> group, const std::string& why);
  void StartEval(Job& job, std::vector<WorkerRegistry::Candidate> group);
  // Appends the attempt just started to status.attempts (the newest kMaxAttemptsShown).
  void RecordAttempt(Job& job, int64_t world, const std::string& why);
  // An elastic job below its world_size regroups at a checkpoint when workers are idle.
  void MaybeGrow(Job& job, int64_t checkpoint_step, Clock::time_point now);
  // Idle live workers that have the job's model.
  std::vector<WorkerRegistry::Candidate> IdleFor(const Job& job, Clock::time_point now) const;
  void Fail(Job& job, const std::string& reason);
  // Ends the current attempt: aborts the other members, clears the rendezvous, then
  // restarts (RESTARTING) or fails the job.
  void EndAttempt(Job& job, const std::string& reason, bool retryable, Clock::time_point now);
  void ReleaseMembers(Job& job, bool abort);
  // Ends a running attempt one of whose members is no longer live; false when all are.
  bool EndIfMemberLost(Job& job, Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishEval(Job& job);
  void Forget(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The running attempt's member (worker_id, session_id) holding `ref`, or an error that
  // names what does not match.
  absl::Status CheckMember(const Job* job, const v1::TaskRef& ref, const std::string& worker_id,
                           const std::string& session_id) const;
  Job* Find(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const Job* Find(const std::string& job_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Under mu_: the job `caller` may `verb` (cancel, delete); NOT_FOUND or
  // PERMISSION_DENIED naming its submitter.
  absl::StatusOr<Job*> FindManaged(const std::string& job_id, const Caller& caller,
                                   const char* verb) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string RendezvousPrefix(const Job& job) const;
  // Checkpoint lineage and retention. Outside mu_: train.init_from resolved to a checkpoint
  // id that verifies and whose projector fits the spec's (FAILED_PRECONDITION otherwise).
  absl::Status ResolveInitFrom(v1::TrainSpec* spec) const;
  // Under mu_: the job's retention set in the store, and pins (held by the job id until it
  // ends) on the checkpoint an eval job reads or a training job starts from.
  absl::Status HoldCheckpoints(const Job& job);
  void SetAside(const std::string& name, const std::string& reason) const;

  const SchedulerOptions options_;
  WorkerRegistry* const registry_;
  CheckpointStore* const checkpoints_;
  RendezvousStore* const rendezvous_;
  const std::unique_ptr<JobTensorBoard> tensorboard_;  // null without tensorboard_dir

  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  std::map<std::string, std::unique_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::string> order_ ABSL_GUARDED_BY(mu_);  // seq -> id
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace llava
