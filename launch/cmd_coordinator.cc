// `coordinator` (llava-ctl and llava-mnist): the long-running coordinator server,
// configured by flags or the environment (LLAVA_LISTEN, LLAVA_STATE_DIR), stopped by
// SIGTERM/SIGINT.
#include <thread>

#include "absl/flags/flag.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "coordinator/coordinator_server.h"
#include "launch/cluster_flags.h"
#include "launch/cmd_cluster.h"
#include "launch/signals.h"

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
          "coordinator: the newest checkpoints kept per job whose spec sets no keep_last (1..100; "
          "older ones are deleted)");
ABSL_FLAG(int64_t, max_job_checkpoint_bytes, int64_t{16} << 30,
          "coordinator: the kept checkpoints of one job together");
ABSL_FLAG(int64_t, max_checkpoint_bytes, int64_t{4} << 30, "coordinator: one checkpoint file");
ABSL_FLAG(int64_t, max_jobs, 10000, "coordinator: job records held at once");
ABSL_FLAG(int64_t, finished_job_ttl_ms, int64_t{7} * 24 * 3600 * 1000,
          "coordinator: finished jobs' records are forgotten this long after they end (0: never)");
ABSL_FLAG(int64_t, max_workers, 4096, "coordinator: worker registrations held at once");
ABSL_FLAG(int64_t, max_long_polls, 256,
          "coordinator: calls that may wait at once (watches, rendezvous waits, heartbeat polls)");

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
    LM_LOG(WARNING)
        << "coordinator: one token for clients and workers (--auth_token_file): "
           "workers and clients are not told apart; give each its own with --auth_tokens_file";
  }
  o.health_listen = absl::GetFlag(FLAGS_health_listen);
  o.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  CoordinatorServer server(o);
  LM_RETURN_IF_ERROR(server.Start());
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty())
    LM_RETURN_IF_ERROR(WriteFileAtomic(port_file, std::to_string(server.port())));
  while (!StopRequested().load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  LM_LOG(INFO) << "coordinator: stopping (signal)";
  server.Shutdown();
  LM_LOG(INFO) << "coordinator: stopped, job records written";
  return absl::OkStatus();
}

}  // namespace llava
