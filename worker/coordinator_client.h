// The gRPC client of the coordinator's services, used by workers (registration,
// heartbeats, shards, rendezvous, checkpoint upload) and by the command-line client
// (jobs, checkpoint download): it implements both roles of coordinator_roles.h, whose
// comments list each call's errors. Every call carries a deadline (rpc_timeout, plus the
// requested wait for long polls) and bounded message sizes. A worker's calls after
// registration carry its session (SetSession), which the coordinator checks against the
// task or the rendezvous key they touch. Thread-safe (gRPC stubs are; the session is
// under a mutex).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <utility>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "common/job_spec.h"
#include "common/net/security.h"
#include "protos/llava.grpc.pb.h"
#include "worker/coordinator_roles.h"

namespace llava {

struct ClientOptions {
  std::string address = "127.0.0.1:50051";
  std::chrono::milliseconds rpc_timeout{10000};
  int64_t max_message_bytes = 8 << 20;
  int64_t checkpoint_chunk_bytes = 1 << 20;
  // TLS and the bearer token (plaintext, no token by default).
  std::shared_ptr<const RpcSecurity> security = RpcSecurity::Insecure();
};

class CoordinatorClient : public WorkerCoordinator, public JobClient {
 public:
  explicit CoordinatorClient(ClientOptions options);

  // Workers.
  absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::WorkerInfo& info) override;
  // The session that GetShard, the rendezvous and uploads speak for.
  void SetSession(const std::string& worker_id, const std::string& session_id) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) override;
  absl::Status ReportTaskResult(const v1::TaskResultRequest& request) override;
  absl::StatusOr<v1::Shard> GetShard(const v1::TaskRef& ref, int64_t epoch) override;
  absl::StatusOr<v1::ListWorkersResponse> ListWorkers() override;
  absl::Status Leave(const std::string& worker_id, const std::string& session_id,
                     const std::string& reason) override;

  // Rendezvous (the group's store).
  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds wait) override;

  // Checkpoints; downloads verify size and SHA-256.
  absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(v1::CheckpointHeader header,
                                                      const std::string& bytes) override;
  using Download = CheckpointDownload;
  // `projector_only`: without the optimizer state (eval, inference).
  absl::StatusOr<Download> DownloadCheckpoint(const std::string& checkpoint,
                                              bool projector_only = false) override;
  absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(const std::string& job_id) override;

  // Jobs.
  absl::StatusOr<v1::JobStatus> Submit(const v1::SubmitJobRequest& request) override;
  absl::StatusOr<v1::JobStatus> GetJob(const std::string& job_id, bool include_history) override;
  // Every page, oldest first.
  absl::StatusOr<v1::ListJobsResponse> ListJobs() override;
  absl::StatusOr<v1::JobStatus> CancelJob(const std::string& job_id) override;
  absl::Status DeleteJob(const std::string& job_id) override;
  // Streams the job's status to `on_status` until the job ends (returns its last status)
  // or `timeout` passes (DEADLINE_EXCEEDED); reopens the stream when the server closes it
  // early.
  absl::StatusOr<v1::JobStatus> WatchJob(
      const std::string& job_id, std::chrono::milliseconds timeout,
      const std::function<void(const v1::JobStatus&)>& on_status) override;

  const ClientOptions& options() const { return options_; }

 private:
  void SetDeadline(grpc::ClientContext* context, std::chrono::milliseconds extra = {}) const;
  std::pair<std::string, std::string> Session() const;
  // Every page of a paged list call, appended into one response.
  template <typename Request, typename Response, typename Call, typename Append>
  absl::StatusOr<Response> AllPages(const Call& call, const Append& append, const char* what) const;

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  std::unique_ptr<v1::RendezvousService::Stub> rendezvous_;
  std::unique_ptr<v1::CheckpointService::Stub> checkpoints_;
  mutable absl::Mutex mu_;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  std::string session_id_ ABSL_GUARDED_BY(mu_);
};

// grpc::Status -> absl::Status with the same code and message.
absl::Status FromGrpc(const grpc::Status& status, const std::string& what);

}  // namespace llava
