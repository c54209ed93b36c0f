// What each kind of caller needs of the coordinator, as interfaces: WorkerCoordinator (a
// worker: its session, heartbeats, task results, shards, the rendezvous store, checkpoint
// upload and download) and JobClient (a person or a script: jobs, checkpoints, workers).
// CoordinatorClient (coordinator_client.h) implements both over gRPC; tests put in-memory
// fakes behind them (tests/fake_coordinator.h), so that a worker's behaviour is tested
// without processes or sockets. Each method lists the errors a caller must expect; codes
// not listed come from the transport (UNAVAILABLE: the coordinator cannot be reached,
// DEADLINE_EXCEEDED: no reply within the client's rpc_timeout, UNAUTHENTICATED or
// PERMISSION_DENIED: the credential is refused) and may come from any call.
// Without libtorch: the control plane (llava-ctl) uses JobClient. Implementations are
// thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protos/llava.pb.h"
#include "worker/rendezvous_client.h"

namespace llava {

// A checkpoint file as downloaded: its header and bytes, verified against the header's
// size and SHA-256.
struct CheckpointDownload {
  v1::CheckpointHeader header;
  std::string bytes;
};

// A worker's view of the coordinator. The rendezvous store (Set, Get) is the attempt's
// (RendezvousClient): Set fails ALREADY_EXISTS for a key already set and
// RESOURCE_EXHAUSTED past the attempt's quota; Get fails DEADLINE_EXCEEDED when the key is
// not set within `wait`, UNAVAILABLE when the coordinator shuts down. Calls after
// Register carry the session given to SetSession.
class WorkerCoordinator : public RendezvousClient {
 public:
  ~WorkerCoordinator() override = default;

  // A new session for info.worker_id. INVALID_ARGUMENT: a malformed field (retrying cannot
  // help); ALREADY_EXISTS: the id still has a live session (an earlier process of this
  // worker, until it leaves or falls silent); RESOURCE_EXHAUSTED: the coordinator holds as
  // many workers as it takes.
  virtual absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::WorkerInfo& info) = 0;
  // The session that later calls speak for (GetShard, the rendezvous, uploads). No errors.
  virtual void SetSession(const std::string& worker_id, const std::string& session_id) = 0;
  // Liveness and the mailbox; long polls up to request.wait_ms while nothing is queued.
  // NOT_FOUND: the session is unknown (the worker was replaced, left, or the coordinator
  // restarted without it): register again.
  virtual absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) = 0;
  // NOT_FOUND: the session is gone; PERMISSION_DENIED: the task is not this session's
  // (its attempt ended). Either way the result is dropped: nobody waits for it.
  virtual absl::Status ReportTaskResult(const v1::TaskResultRequest& request) = 0;
  // The rank's samples of one epoch. FAILED_PRECONDITION: the attempt no longer runs;
  // PERMISSION_DENIED: the rank is not this session's; INVALID_ARGUMENT: the epoch or
  // rank is outside the plan.
  virtual absl::StatusOr<v1::Shard> GetShard(const v1::TaskRef& ref, int64_t epoch) = 0;
  // Ends the session at once (the coordinator ends its attempt). NOT_FOUND: the session
  // is already gone.
  virtual absl::Status Leave(const std::string& worker_id, const std::string& session_id,
                             const std::string& reason) = 0;
  // Rank 0's checkpoint of its attempt. PERMISSION_DENIED: the attempt is not this
  // session's (it ended); INVALID_ARGUMENT: a malformed header or file; RESOURCE_EXHAUSTED
  // or FAILED_PRECONDITION: the coordinator cannot keep it (its store is full or failing);
  // DATA_LOSS: the bytes were damaged on the way.
  virtual absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(v1::CheckpointHeader header,
                                                              const std::string& bytes) = 0;
  // `projector_only`: without the optimizer state (eval, init_from). NOT_FOUND: no such
  // checkpoint (pruned, or never written); DATA_LOSS: the bytes do not match the header's
  // size or SHA-256.
  virtual absl::StatusOr<CheckpointDownload> DownloadCheckpoint(const std::string& checkpoint,
                                                                bool projector_only = false) = 0;
};

// A job client's view of the coordinator: submission, status, the job's checkpoints.
class JobClient {
 public:
  virtual ~JobClient() = default;

  // INVALID_ARGUMENT: the spec does not validate (the message names the field);
  // FAILED_PRECONDITION: it names what is not there (init_from's checkpoint, a model no
  // worker holds, when the request waits for none); RESOURCE_EXHAUSTED: too many jobs.
  virtual absl::StatusOr<v1::JobStatus> Submit(const v1::SubmitJobRequest& request) = 0;
  // NOT_FOUND: no such job (never submitted, or expired after it ended).
  virtual absl::StatusOr<v1::JobStatus> GetJob(const std::string& job_id, bool include_history) = 0;
  // Every page, oldest first.
  virtual absl::StatusOr<v1::ListJobsResponse> ListJobs() = 0;
  // The job's status after the cancel (a job that has ended stays as it ended). NOT_FOUND:
  // no such job; PERMISSION_DENIED: another submitter's job.
  virtual absl::StatusOr<v1::JobStatus> CancelJob(const std::string& job_id) = 0;
  // NOT_FOUND: no such job; FAILED_PRECONDITION: it has not ended; PERMISSION_DENIED:
  // another submitter's job.
  virtual absl::Status DeleteJob(const std::string& job_id) = 0;
  // Calls `on_status` with each status until the job ends (returns its last status).
  // DEADLINE_EXCEEDED: `timeout` passed first; NOT_FOUND: no such job.
  virtual absl::StatusOr<v1::JobStatus> WatchJob(
      const std::string& job_id, std::chrono::milliseconds timeout,
      const std::function<void(const v1::JobStatus&)>& on_status) = 0;
  // A training job's checkpoints, oldest first. NOT_FOUND: no such job.
  virtual absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(
      const std::string& job_id) = 0;
  // As WorkerCoordinator::DownloadCheckpoint; `checkpoint` may also be a training job's
  // id (its newest checkpoint).
  virtual absl::StatusOr<CheckpointDownload> DownloadCheckpoint(const std::string& checkpoint,
                                                                bool projector_only = false) = 0;
  // Every registered worker, by id.
  virtual absl::StatusOr<v1::ListWorkersResponse> ListWorkers() = 0;
};

}  // namespace llava
