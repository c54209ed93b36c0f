// `llava-mnist coordinator` and `llava-mnist worker`: long-running servers, configured by
// flags or the environment (LLAVA_LISTEN, LLAVA_STATE_DIR, LLAVA_COORDINATOR,
// LLAVA_WORKER_ID or HOSTNAME, LLAVA_COLLECTIVE_HOST or POD_IP), stopped by SIGTERM/SIGINT.
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/net/health_server.h"
#include "common/net/metrics_endpoint.h"
#include "coordinator/coordinator_server.h"
#include "launch/cluster_flags.h"
#include "launch/commands.h"
#include "launch/process.h"
#include "launch/worker_supervisor.h"
#include "launch/cmd_cluster.h"
#include "launch/flags_common.h"
#include "launch/signals.h"
#include "launch/vlm_setup.h"
#include "worker/collective.h"
#include "worker/worker_agent.h"

ABSL_FLAG(std::string, listen, llava::GetEnvOr("LLAVA_LISTEN", "0.0.0.0:50051"),
          "coordinator: gRPC listen address (port 0: any free port, see --port_file)");
ABSL_FLAG(std::string, state_dir, llava::GetEnvOr("LLAVA_STATE_DIR", "coordinator-state"),
          "coordinator: checkpoints and job records");
ABSL_FLAG(std::string, tensorboard_dir, llava::GetEnvOr("LLAVA_TENSORBOARD_DIR", ""),
          "coordinator: the jobs' TensorBoard event files, <dir>/<job id>/ (empty: "
          "<state_dir>/tensorboard)");
ABSL_FLAG(std::string, port_file, "", "coordinator: write the bound port here once listening");
ABSL_FLAG(int64_t, heartbeat_interval_ms, 1000, "coordinator: how often workers heartbeat");
ABSL_FLAG(int64_t, worker_timeout_ms, 10000, "coordinator: a worker silent this long is lost");
ABSL_FLAG(int64_t, restart_wait_ms, 60000,
          "coordinator: how long a failed job waits for enough workers before it fails");
ABSL_FLAG(int64_t, collective_timeout_ms, 60000,
          "coordinator: a collective that takes longer fails its attempt (no rank hangs)");
ABSL_FLAG(int64_t, tick_ms, 100, "coordinator: scheduling period");
ABSL_FLAG(int64_t, keep_checkpoints, 3,
          "coordinator: the newest checkpoints kept per job whose spec sets no keep_last (1..100; older ones are deleted)");
ABSL_FLAG(int64_t, max_job_checkpoint_bytes, int64_t{16} << 30,
          "coordinator: the kept checkpoints of one job together");
ABSL_FLAG(int64_t, max_checkpoint_bytes, int64_t{4} << 30, "coordinator: one checkpoint file");
ABSL_FLAG(int64_t, max_jobs, 10000, "coordinator: job records held at once");
ABSL_FLAG(int64_t, finished_job_ttl_ms, int64_t{7} * 24 * 3600 * 1000,
          "coordinator: finished jobs' records are forgotten this long after they end (0: never)");
ABSL_FLAG(int64_t, max_workers, 4096, "coordinator: worker registrations held at once");
ABSL_FLAG(int64_t, max_long_polls, 256,
          "coordinator: calls that may wait at once (watches, rendezvous waits, heartbeat polls)");
ABSL_FLAG(std::string, health_listen, llava::GetEnvOr("LLAVA_HEALTH_LISTEN", ""),
          "coordinator, worker: plaintext grpc.health.v1 port for probes (empty: none)");
ABSL_FLAG(std::string, metrics_listen, llava::GetEnvOr("LLAVA_METRICS_LISTEN", ""),
          "coordinator, worker: serve Prometheus metrics at http://ADDRESS/metrics (empty: none)");
ABSL_FLAG(std::string, worker_id,
          llava::GetEnvOr("LLAVA_WORKER_ID", llava::GetEnvOr("HOSTNAME", "")),
          "worker: unique name (default: $LLAVA_WORKER_ID, else $HOSTNAME, else worker-<pid>)");
ABSL_FLAG(std::string, collective, "auto", "worker: gloo, nccl, or auto (nccl on CUDA, else gloo)");
ABSL_FLAG(std::string, collective_host,
          llava::GetEnvOr("LLAVA_COLLECTIVE_HOST", llava::GetEnvOr("POD_IP", "127.0.0.1")),
          "worker: address peers reach this worker's Gloo transport on");
ABSL_FLAG(int64_t, threads, 0, "worker: CPU threads for libtorch (0: its default)");
ABSL_FLAG(std::string, gpus, llava::GetEnvOr("LLAVA_GPUS", ""),
          "worker: ranks of this pod, one worker process per GPU, registered as "
          "<worker_id>-gpu<i>: all, or N (empty: this process is one worker); with --device cpu "
          "every rank runs on the CPU");
ABSL_FLAG(int64_t, coordinator_lost_ms, 0,
          "worker: exit when the coordinator is unreachable this long (0: keep trying)");

namespace llava {

absl::Status RunCoordinator(const std::vector<char*>&) {
  InstallStopHandlers();
  CoordinatorOptions o;
  o.listen = absl::GetFlag(FLAGS_listen);
  o.state_dir = absl::GetFlag(FLAGS_state_dir);
  o.tensorboard_dir = absl::GetFlag(FLAGS_tensorboard_dir);
  o.heartbeat_interval = std::chrono::milliseconds(absl::GetFlag(FLAGS_heartbeat_interval_ms));
  o.worker_timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_worker_timeout_ms));
  o.restart_wait = std::chrono::milliseconds(absl::GetFlag(FLAGS_restart_wait_ms));
  o.collective_timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_collective_timeout_ms));
  o.tick = std::chrono::milliseconds(absl::GetFlag(FLAGS_tick_ms));
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.checkpoint_chunk_bytes = std::min<int64_t>(1 << 20, o.max_message_bytes / 2);
  o.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  o.max_job_checkpoint_bytes = absl::GetFlag(FLAGS_max_job_checkpoint_bytes);
  o.max_checkpoint_bytes = absl::GetFlag(FLAGS_max_checkpoint_bytes);
  o.max_jobs = absl::GetFlag(FLAGS_max_jobs);
  o.finished_job_ttl = std::chrono::milliseconds(absl::GetFlag(FLAGS_finished_job_ttl_ms));
  o.max_workers = absl::GetFlag(FLAGS_max_workers);
  o.max_long_polls = absl::GetFlag(FLAGS_max_long_polls);
  const RpcSecurityOptions security = SecurityOptionsFromFlags();
  LM_ASSIGN_OR_RETURN(o.security, RpcSecurity::LoadServer(security));
  if (!security.auth_token_file.empty()) {
    LM_LOG(WARNING) << "coordinator: one token for clients and workers (--auth_token_file): "
                       "workers and clients are not told apart; give each its own with --auth_tokens_file";
  }
  o.health_listen = absl::GetFlag(FLAGS_health_listen);
  o.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  CoordinatorServer server(o);
  LM_RETURN_IF_ERROR(server.Start());
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) LM_RETURN_IF_ERROR(WriteFileAtomic(port_file, std::to_string(server.port())));
  while (!StopRequested().load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  LM_LOG(INFO) << "coordinator: stopping (signal)";
  server.Shutdown();
  LM_LOG(INFO) << "coordinator: stopped, job records written";
  return absl::OkStatus();
}

namespace {

// `worker --gpus`: one worker process per GPU under this one (launch/worker_supervisor.h).
absl::Status RunWorkerGroup(const std::string& gpus) {
  SupervisorOptions s;
  if (gpus == "all") {
    s.gpus = static_cast<int64_t>(torch::cuda::device_count());
    if (s.gpus == 0) return absl::FailedPreconditionError("--gpus all: no CUDA device is visible");
  } else if (!absl::SimpleAtoi(gpus, &s.gpus)) {
    return absl::InvalidArgumentError(absl::StrCat("--gpus must be all or a number, got '", gpus, "'"));
  }
  s.worker_id = absl::GetFlag(FLAGS_worker_id);
  if (s.worker_id.empty()) s.worker_id = absl::StrCat("worker-", getpid());
  s.device = absl::GetFlag(FLAGS_device) == "cpu" ? "cpu" : "cuda";
  s.health_listen = absl::GetFlag(FLAGS_health_listen);
  s.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  return RunWorkerSupervisor(s, SelfExecutable(), CommandLine(), StopRequested());
}

}  // namespace

absl::Status RunWorker(const std::vector<char*>&) {
  InstallStopHandlers();
  if (const std::string gpus = absl::GetFlag(FLAGS_gpus); !gpus.empty()) return RunWorkerGroup(gpus);
  if (absl::GetFlag(FLAGS_threads) > 0) at::set_num_threads(static_cast<int>(absl::GetFlag(FLAGS_threads)));
  WorkerOptions o;
  LM_ASSIGN_OR_RETURN(o.client, ClientOptionsFromFlags());
  o.worker_id = absl::GetFlag(FLAGS_worker_id);
  if (o.worker_id.empty()) o.worker_id = absl::StrCat("worker-", getpid());
  // Probes see the process alive while the model loads, and ready once registered.
  std::unique_ptr<HealthServer> health;
  if (!absl::GetFlag(FLAGS_health_listen).empty()) {
    LM_ASSIGN_OR_RETURN(health, HealthServer::Start(absl::GetFlag(FLAGS_health_listen), "worker", o.worker_id));
    LM_LOG(INFO) << "worker: health probes on port " << health->port();
    o.health = health.get();
  }
  std::unique_ptr<MetricsEndpoint> metrics;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    LM_ASSIGN_OR_RETURN(metrics, MetricsEndpoint::Start(absl::GetFlag(FLAGS_metrics_listen)));
    LM_LOG(INFO) << "worker: metrics on port " << metrics->port();
  }
  o.collective_host = absl::GetFlag(FLAGS_collective_host);
  o.coordinator_lost_after = std::chrono::milliseconds(absl::GetFlag(FLAGS_coordinator_lost_ms));
  // The model and data are loaded once and serve every job this worker runs.
  LM_ASSIGN_OR_RETURN(VlmRuntime rt, LoadRuntimeFromFlags());
  LM_ASSIGN_OR_RETURN(MnistSet train, LoadMnistFromFlags("train", "", "", -1));
  LM_ASSIGN_OR_RETURN(MnistSet test, LoadMnistFromFlags("test", "", "", -1));
  o.device = rt.model->device.str();
  std::string collective = absl::GetFlag(FLAGS_collective);
  if (collective == "auto") collective = rt.model->device.is_cuda() ? "nccl" : "gloo";
  if (!HaveEngine(collective)) {
    return absl::FailedPreconditionError(absl::StrCat("--collective ", collective,
                                                      " is not available in this build"));
  }
  o.collective = collective;
  LM_RETURN_IF_ERROR(o.Validate());
  WorkerResources resources{rt.model.get(), rt.tokenizer.get(), &train, &test,
                            absl::GetFlag(FLAGS_model)};
  LM_LOG(INFO) << "worker " << o.worker_id << ": " << resources.model_spec << " on " << o.device
               << " (" << collective << "), " << train.size() << " train / " << test.size()
               << " test digits; coordinator " << o.client.address;
  WorkerAgent agent(o, resources);
  if (metrics) {
    metrics->Add(agent.metrics_registry());
    metrics->Add(agent.metrics().device_memory());
  }
  absl::Status s = agent.Run(&StopRequested());
  if (StopRequested().load()) LM_LOG(INFO) << "worker " << o.worker_id << ": stopped (signal)";
  return s;
}

}  // namespace llava
