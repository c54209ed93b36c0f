// The coordinator's jobs: validation at submission, forming a group of idle workers for
// each attempt (ranks, rendezvous prefix, shards of the data plan), progress from rank
// 0's heartbeats, eval shards gathered into one report, restarts from the last
// checkpoint after a lost worker or failed rank, cancellation, and job records persisted
// under <state_dir>/jobs so that a restarted coordinator resumes its jobs.
// Thread-safe: one mutex (taken before the registry's, never after); Tick() runs on the
// server's scheduler thread; watchers wait on a condition variable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data_plan.h"
#include "coordinator/checkpoint_store.h"
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
};

class JobScheduler {
 public:
  JobScheduler(SchedulerOptions options, WorkerRegistry* registry, CheckpointStore* checkpoints,
               RendezvousStore* rendezvous);

  // Reads the job records of an earlier run: unfinished jobs restart from their last
  // checkpoint once workers are available.
  absl::Status LoadState();

  absl::StatusOr<v1::JobStatus> Submit(const v1::SubmitJobRequest& request, Clock::time_point now);
  absl::StatusOr<v1::JobStatus> Get(const std::string& job_id, bool include_history) const;
  std::vector<v1::JobStatus> List() const;
  absl::StatusOr<v1::JobStatus> Cancel(const std::string& job_id);
  // Waits until the job changes after `*version` (or `deadline`); returns its status and
  // updates `*version`. NOT_FOUND for an unknown job; DEADLINE_EXCEEDED on timeout.
  absl::StatusOr<v1::JobStatus> WaitForChange(const std::string& job_id, int64_t* version,
                                              Clock::time_point deadline);

  // Metrics and eval progress carried by a heartbeat (after the registry accepted it).
  void OnHeartbeat(const v1::HeartbeatRequest& request);
  absl::Status OnTaskResult(const v1::TaskResultRequest& request);
  absl::StatusOr<v1::Shard> GetShard(const v1::GetShardRequest& request) const;
  // OK only for rank 0 of the job's current attempt.
  absl::Status CheckUploader(const v1::TaskRef& ref) const;
  void OnCheckpointStored(const v1::CheckpointInfo& info);

  // Starts attempts that can start, notices lost workers, fails jobs that waited too long.
  void Tick(Clock::time_point now);
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
    std::vector<Member> members;  // by rank, for the current attempt
    std::unique_ptr<DataPlan> plan;
    int64_t eval_begin_end[2] = {0, 0};
    Clock::time_point waiting_since;
    int64_t version = 0;
  };

  bool Terminal(const Job& job) const;
  void Changed(Job& job, bool persist);
  void Persist(const Job& job) const;
  absl::Status ValidateAgainstWorkers(const v1::SubmitJobRequest& request,
                                      Clock::time_point now) const;
  void TryStart(Job& job, Clock::time_point now);
  void StartTrain(Job& job, std::vector<WorkerRegistry::Candidate> group);
  void StartEval(Job& job, std::vector<WorkerRegistry::Candidate> group);
  // Ends the current attempt: aborts the other members, clears the rendezvous, then
  // restarts (RESTARTING) or fails the job.
  void EndAttempt(Job& job, const std::string& reason, bool retryable, Clock::time_point now);
  void ReleaseMembers(Job& job, bool abort);
  void FinishEval(Job& job);
  Job* Find(const std::string& job_id);
  const Job* Find(const std::string& job_id) const;
  std::string RendezvousPrefix(const Job& job) const;

  const SchedulerOptions options_;
  WorkerRegistry* const registry_;
  CheckpointStore* const checkpoints_;
  RendezvousStore* const rendezvous_;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, std::unique_ptr<Job>> jobs_;  // guarded by mu_
  std::vector<std::string> order_;                    // submission order; guarded by mu_
  int64_t next_id_ = 1;                               // guarded by mu_
};

}  // namespace llava
