// `llava-mnist worker`: the long-running worker server, configured by flags or the
// environment (LLAVA_COORDINATOR, LLAVA_WORKER_ID or HOSTNAME, LLAVA_COLLECTIVE_HOST or
// POD_IP), stopped by SIGTERM/SIGINT. The coordinator's is launch/cmd_coordinator.cc.
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
#include "launch/cluster_flags.h"
#include "launch/command_runner.h"
#include "launch/process.h"
#include "launch/worker_supervisor.h"
#include "launch/cmd_cluster.h"
#include "launch/flags_common.h"
#include "launch/signals.h"
#include "launch/vlm_setup.h"
#include "worker/collective.h"
#include "worker/worker_agent.h"

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

namespace {

// `worker --gpus`: one worker process per GPU under this one (launch/worker_supervisor.h).
absl::Status RunWorkerGroup(const std::string& gpus) {
  SupervisorOptions s;
  if (gpus == "all") {
    s.gpus = static_cast<int64_t>(torch::cuda::device_count());
    if (s.gpus == 0) return absl::FailedPreconditionError("--gpus all: no CUDA device is visible");
  } else if (!absl::SimpleAtoi(gpus, &s.gpus)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpus must be all or a number, got '", gpus, "'"));
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
  if (const std::string gpus = absl::GetFlag(FLAGS_gpus); !gpus.empty())
    return RunWorkerGroup(gpus);
  if (absl::GetFlag(FLAGS_threads) > 0)
    at::set_num_threads(static_cast<int>(absl::GetFlag(FLAGS_threads)));
  WorkerOptions o;
  LM_ASSIGN_OR_RETURN(o.client, ClientOptionsFromFlags());
  o.worker_id = absl::GetFlag(FLAGS_worker_id);
  if (o.worker_id.empty()) o.worker_id = absl::StrCat("worker-", getpid());
  // Probes see the process alive while the model loads, and ready once registered.
  std::unique_ptr<HealthServer> health;
  if (!absl::GetFlag(FLAGS_health_listen).empty()) {
    LM_ASSIGN_OR_RETURN(
        health, HealthServer::Start(absl::GetFlag(FLAGS_health_listen), "worker", o.worker_id));
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
    return absl::FailedPreconditionError(
        absl::StrCat("--collective ", collective, " is not available in this build"));
  }
  o.collective = collective;
  LM_RETURN_IF_ERROR(o.Validate());
  WorkerResources resources{rt.model.get(), rt.tokenizer.get(),         &train,
                            &test,          absl::GetFlag(FLAGS_model), rt.forward};
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
