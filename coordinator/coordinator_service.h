// The coordinator's gRPC handlers (JobService, WorkerService, RendezvousService,
// CheckpointService). Each handler checks the caller's role (common/net/caller.h),
// validates its request, returns early with a status that names the bad field, and hands
// off to the registry, the scheduler, the rendezvous store or the checkpoint store: no
// job logic and no tensor math here. Calls that wait (watches, rendezvous waits,
// heartbeat long polls) hold a ticket of the LongPollGate, wait in short slices so that a
// client gone away or a shutdown ends them, and never outlast their bound. Thread-safe:
// gRPC calls handlers from its own threads; the components lock for themselves.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "coordinator/checkpoint_store.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_scheduler.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/worker_registry.h"
#include "protos/llava.grpc.pb.h"

namespace llava {

// Caps the calls that may wait at once: past it, a watch or a rendezvous wait is
// RESOURCE_EXHAUSTED and a heartbeat answers without waiting. Thread-safe.
class LongPollGate {
 public:
  explicit LongPollGate(int64_t max) : max_(max) {}
  // Holds one place while alive; ok() false when none was free.
  class Ticket {
   public:
    explicit Ticket(LongPollGate* gate);
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    bool ok() const { return gate_ != nullptr; }

   private:
    LongPollGate* gate_;
  };
  int64_t in_flight() const { return in_flight_.load(); }
  int64_t max() const { return max_; }

 private:
  const int64_t max_;
  std::atomic<int64_t> in_flight_{0};
};

struct ServiceOptions {
  // With tokens every call has a caller (name, roles) to check; without (plaintext on
  // loopback) every caller may do everything.
  bool tokens_required = false;
  std::chrono::milliseconds heartbeat_interval{1000};
  // Longest a rendezvous Get may wait server-side, whatever the client asks.
  std::chrono::milliseconds max_store_wait{120000};
  // Longest a WatchJob stream stays open (the client reopens it).
  std::chrono::milliseconds max_watch{3600000};
  int64_t checkpoint_chunk_bytes = 1 << 20;
  int64_t max_checkpoint_bytes = int64_t{4} << 30;
};

struct Components {
  WorkerRegistry* registry;
  JobScheduler* scheduler;
  RendezvousStore* rendezvous;
  CheckpointStore* checkpoints;
  CoordinatorMetrics* metrics;
  LongPollGate* long_polls;
  const std::atomic<bool>* stopping;  // true once the server is shutting down
};

class JobServiceImpl final : public v1::JobService::Service {
 public:
  JobServiceImpl(Components c, ServiceOptions o) : c_(c), o_(o) {}
  grpc::Status SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest*,
                         v1::JobStatus*) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest*, v1::JobStatus*) override;
  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest*,
                        grpc::ServerWriter<v1::JobStatus>*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                        v1::ListJobsResponse*) override;
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*,
                         v1::JobStatus*) override;
  grpc::Status DeleteJob(grpc::ServerContext*, const v1::DeleteJobRequest*,
                         v1::DeleteJobResponse*) override;

 private:
  Components c_;
  ServiceOptions o_;
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  WorkerServiceImpl(Components c, ServiceOptions o) : c_(c), o_(o) {}
  grpc::Status RegisterWorker(grpc::ServerContext*, const v1::RegisterWorkerRequest*,
                              v1::RegisterWorkerResponse*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*,
                         v1::HeartbeatResponse*) override;
  grpc::Status ReportTaskResult(grpc::ServerContext*, const v1::TaskResultRequest*,
                                v1::TaskResultResponse*) override;
  grpc::Status GetShard(grpc::ServerContext*, const v1::GetShardRequest*, v1::Shard*) override;
  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse*) override;
  grpc::Status LeaveWorker(grpc::ServerContext*, const v1::LeaveWorkerRequest*,
                           v1::LeaveWorkerResponse*) override;

 private:
  Components c_;
  ServiceOptions o_;
};

class RendezvousServiceImpl final : public v1::RendezvousService::Service {
 public:
  RendezvousServiceImpl(Components c, ServiceOptions o) : c_(c), o_(o) {}
  grpc::Status Set(grpc::ServerContext*, const v1::StoreSetRequest*,
                   v1::StoreSetResponse*) override;
  grpc::Status Get(grpc::ServerContext*, const v1::StoreGetRequest*,
                   v1::StoreGetResponse*) override;

 private:
  Components c_;
  ServiceOptions o_;
};

class CheckpointServiceImpl final : public v1::CheckpointService::Service {
 public:
  CheckpointServiceImpl(Components c, ServiceOptions o) : c_(c), o_(o) {}
  grpc::Status UploadCheckpoint(grpc::ServerContext*, grpc::ServerReader<v1::CheckpointChunk>*,
                                v1::CheckpointInfo*) override;
  grpc::Status DownloadCheckpoint(grpc::ServerContext*, const v1::DownloadCheckpointRequest*,
                                  grpc::ServerWriter<v1::CheckpointChunk>*) override;
  grpc::Status ListCheckpoints(grpc::ServerContext*, const v1::ListCheckpointsRequest*,
                               v1::ListCheckpointsResponse*) override;

 private:
  Components c_;
  ServiceOptions o_;
};

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace llava
