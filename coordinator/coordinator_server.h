// The coordinator process: its options (every address, path and timing value, with
// production defaults that tests shrink), the components, the gRPC server and the
// scheduler thread. Start() returns once the server listens; Shutdown() stops it and
// joins the thread. Thread-safe for Start/Shutdown from one owner thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/net/health_server.h"
#include "common/net/metrics_endpoint.h"
#include "common/net/security.h"
#include "coordinator/checkpoint_store.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/job_scheduler.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/worker_registry.h"

namespace grpc {
class Server;
}
namespace prometheus {
class Registry;
}

namespace llava {

struct CoordinatorOptions {
  std::string listen = "0.0.0.0:50051";  // port 0: any free port (see port())
  std::string state_dir = "coordinator-state";
  // The jobs' TensorBoard event files; empty: <state_dir>/tensorboard.
  std::string tensorboard_dir;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds worker_timeout{10000};
  std::chrono::milliseconds restart_wait{60000};
  std::chrono::milliseconds collective_timeout{60000};
  std::chrono::milliseconds tick{100};
  int64_t max_message_bytes = 8 << 20;  // one gRPC message, either way
  int64_t checkpoint_chunk_bytes = 1 << 20;
  int64_t max_checkpoint_bytes = int64_t{4} << 30;  // one checkpoint file
  // Per job: the newest checkpoints kept, and their bytes together.
  int64_t keep_checkpoints = 3;
  int64_t max_job_checkpoint_bytes = int64_t{16} << 30;
  // Job records: at most this many, finished ones forgotten after the TTL (0: never).
  int64_t max_jobs = 10000;
  std::chrono::milliseconds finished_job_ttl{std::chrono::hours(24 * 7)};
  int64_t max_workers = 4096;
  // Calls that may wait at once (watches, rendezvous waits, heartbeat long polls).
  int64_t max_long_polls = 256;
  // A client connection idle this long is closed.
  std::chrono::milliseconds max_connection_idle{std::chrono::minutes(5)};
  // TLS and the bearer token of the gRPC port (plaintext, no token when unset).
  std::shared_ptr<const RpcSecurity> security = RpcSecurity::Insecure();
  // A plaintext port with only grpc.health.v1, for probes ("" : none).
  std::string health_listen;
  // Prometheus /metrics over HTTP ("" : not served).
  std::string metrics_listen;

  absl::Status Validate() const;
};

class CoordinatorServer {
 public:
  explicit CoordinatorServer(CoordinatorOptions options);
  ~CoordinatorServer();

  absl::Status Start();
  int port() const { return port_; }
  int health_port() const { return health_ ? health_->port() : 0; }
  int metrics_port() const { return metrics_endpoint_ ? metrics_endpoint_->port() : 0; }
  // Blocks until Shutdown() is called from another thread (or a signal handler path).
  void Wait();
  // Probes fail from here on, calls in flight get a short grace, the scheduler thread
  // stops, and every job record is written (the step counters included).
  void Shutdown();

 private:
  CoordinatorOptions options_;
  std::unique_ptr<WorkerRegistry> registry_;
  std::unique_ptr<RendezvousStore> rendezvous_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<JobScheduler> scheduler_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<RendezvousServiceImpl> rendezvous_service_;
  std::unique_ptr<CheckpointServiceImpl> checkpoint_service_;
  std::shared_ptr<prometheus::Registry> metrics_registry_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  std::unique_ptr<HealthServer> health_;
  std::unique_ptr<LongPollGate> long_polls_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<grpc::Server> server_;
  std::thread ticker_;
  std::atomic<bool> stop_{false};
  int port_ = 0;
};

}  // namespace llava
