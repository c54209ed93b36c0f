// A long-lived worker: registers with the coordinator (again whenever its session is
// lost), heartbeats on its own thread (carrying rank 0's step metrics and eval progress,
// receiving tasks and aborts), and runs tasks one at a time on the calling thread with the
// model it loaded once. On stop (SIGTERM) it leaves the coordinator first, then abandons
// its task at the next step boundary. Keeps the worker's metrics and tells a health
// server when it is ready. It speaks to the coordinator through the WorkerCoordinator role
// (coordinator_roles.h; gRPC by default) and runs a task through a TaskRunner (the real
// training and eval tasks by default): tests put fakes behind both.
// Threads: Run()'s caller runs tasks; one heartbeat thread.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/status.h"
#include "common/net/health_server.h"
#include "protos/llava.pb.h"
#include "worker/coordinator_client.h"
#include "worker/worker_metrics.h"
#include "worker/worker_tasks.h"

namespace llava {

struct WorkerOptions {
  ClientOptions client;
  std::string worker_id;
  std::string device = "cpu";
  std::string collective = "gloo";  // "gloo" or "nccl"
  std::string collective_host = "127.0.0.1";
  std::chrono::milliseconds register_retry{1000};
  // Give up when the coordinator cannot be reached for this long (0: never).
  std::chrono::milliseconds coordinator_lost_after{0};
  // Told ready while registered (not owned; may be null).
  HealthServer* health = nullptr;

  absl::Status Validate() const;
};

// Runs one task on the task thread and returns how it ended; called with the task's
// environment (its abort flag, the callbacks for steps and the collective group).
using TaskRunner = std::function<TaskOutcome(const v1::Task& task, const TaskEnv& env)>;

// RunTrainTask or RunEvalTask, by the task's kind.
TaskOutcome RunWorkerTask(const v1::Task& task, const TaskEnv& env);

class WorkerAgent {
 public:
  // Speaks gRPC to options.client.address and runs the real tasks.
  WorkerAgent(WorkerOptions options, WorkerResources resources);
  // Speaks to `coordinator`, and runs tasks with `run_task` (null: RunWorkerTask).
  WorkerAgent(WorkerOptions options, WorkerResources resources,
              std::unique_ptr<WorkerCoordinator> coordinator, TaskRunner run_task = nullptr);
  ~WorkerAgent();

  // Serves until `*stop` turns true (a signal): the running task is abandoned at its
  // next step boundary, then the agent returns.
  absl::Status Run(const std::atomic<bool>* stop);

  // The worker's metric families (serve them with a MetricsEndpoint) and its device memory.
  const std::shared_ptr<prometheus::Registry>& metrics_registry() const {
    return metrics_registry_;
  }
  const WorkerMetrics& metrics() const { return metrics_; }

 private:
  void HeartbeatLoop(const std::atomic<bool>* stop);
  // Leaves the coordinator, then has the running task abandon at its next step boundary.
  void StopAndLeave();
  void AbortLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RegisterOnce();
  void RunTask(const v1::Task& task);
  // A heartbeat carrying what is pending (under mu_); `running` the task to report.
  // Drops the step records a heartbeat that carried them up to `sent_end` delivered.
  void AckStepsLocked(int64_t sent_end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::HeartbeatRequest MakeHeartbeatLocked(const v1::TaskRef& running) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  WorkerOptions options_;
  WorkerResources resources_;
  std::unique_ptr<WorkerCoordinator> client_;
  TaskRunner run_task_;
  v1::WorkerInfo info_;
  std::shared_ptr<prometheus::Registry> metrics_registry_;
  WorkerMetrics metrics_;

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::string session_id_ ABSL_GUARDED_BY(mu_);
  std::chrono::milliseconds interval_ ABSL_GUARDED_BY(mu_){1000};
  std::deque<v1::Task> queue_ ABSL_GUARDED_BY(mu_);
  v1::TaskRef running_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::StepMetrics> steps_ ABSL_GUARDED_BY(mu_);  // not yet acknowledged
  // How many steps were ever dropped from steps_' front: steps_[i] is step record number
  // steps_base_ + i. The heartbeat thread and a task's last flush may send the same records
  // at once; each acknowledges up to the record number its request ended at, so one that
  // comes back late drops nothing the other has not sent.
  int64_t steps_base_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t eval_done_ ABSL_GUARDED_BY(mu_) = 0;
  Collective* collective_ ABSL_GUARDED_BY(mu_) = nullptr;
  EvalCheckpointCache eval_cache_;  // the task thread's only
  std::atomic<bool> abort_{false};
  std::atomic<bool> lost_{false};
  std::atomic<bool> leaving_{false};
  std::thread heartbeat_;
};

}  // namespace llava
