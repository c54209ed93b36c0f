#include "worker/worker_agent.h"

#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/job_spec.h"
#include "common/log.h"

namespace llava {
absl::Status WorkerOptions::Validate() const {
  if (client.address.empty()) return absl::InvalidArgumentError("--coordinator is empty");
  if (worker_id.empty()) return absl::InvalidArgumentError("--worker_id is empty");
  if (collective != "gloo" && collective != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("--collective must be gloo or nccl, got ", collective));
  }
  if (client.rpc_timeout.count() <= 0)
    return absl::InvalidArgumentError("--rpc_timeout_ms must be > 0");
  return absl::OkStatus();
}

TaskOutcome RunWorkerTask(const v1::Task& task, const TaskEnv& env) {
  return task.has_train() ? RunTrainTask(task, env) : RunEvalTask(task, env);
}

WorkerAgent::WorkerAgent(WorkerOptions options, WorkerResources resources)
    : WorkerAgent(options, resources, std::make_unique<CoordinatorClient>(options.client)) {}

WorkerAgent::WorkerAgent(WorkerOptions options, WorkerResources resources,
                         std::unique_ptr<WorkerCoordinator> coordinator, TaskRunner run_task)
    : options_(std::move(options)),
      resources_(resources),
      client_(std::move(coordinator)),
      run_task_(run_task ? std::move(run_task) : TaskRunner(RunWorkerTask)),
      metrics_registry_(std::make_shared<prometheus::Registry>()),
      metrics_(*metrics_registry_, options_.device) {
  info_.set_worker_id(options_.worker_id);
  info_.set_collective_host(options_.collective_host);
  info_.set_device(options_.device);
  info_.set_model(resources_.model_spec);
  info_.set_collective(options_.collective);
  info_.set_train_images(resources_.train->size());
  info_.set_test_images(resources_.test->size());
  info_.set_hidden_size(resources_.model->config.hidden_size);
}

WorkerAgent::~WorkerAgent() {
  if (heartbeat_.joinable()) heartbeat_.join();
}

absl::Status WorkerAgent::RegisterOnce() {
  auto reply = client_->Register(info_);
  if (!reply.ok()) return reply.status();
  client_->SetSession(options_.worker_id, reply->session_id());
  absl::MutexLock lock(&mu_);
  session_id_ = reply->session_id();
  interval_ = std::chrono::milliseconds(std::max<int64_t>(1, reply->heartbeat_interval_ms()));
  // A new session owns no task: whatever ran under the old one is abandoned (the
  // coordinator has already counted it lost).
  if (!running_.job_id().empty()) {
    abort_ = true;
    if (collective_ != nullptr) collective_->Abort();
  }
  queue_.clear();
  LM_LOG(INFO) << "worker " << options_.worker_id << " registered with " << options_.client.address
               << " as " << session_id_;
  if (options_.health != nullptr) options_.health->SetReady(true);
  return absl::OkStatus();
}

void WorkerAgent::AbortLocked() {
  abort_ = true;
  if (collective_ != nullptr) collective_->Abort();
}

void WorkerAgent::StopAndLeave() {
  if (options_.health != nullptr) options_.health->SetReady(false);
  std::string session;
  {
    absl::MutexLock lock(&mu_);
    session = session_id_;
  }
  // Leave before abandoning the task: the coordinator then ends the attempt (aborting the
  // peers' collectives) at once and never hands this worker the restarted one.
  leaving_ = true;
  absl::Status s = client_->Leave(options_.worker_id, session, "the worker is stopping (signal)");
  if (s.ok()) {
    LM_LOG(INFO) << "worker " << options_.worker_id << ": left the coordinator";
  } else {
    LM_LOG(WARNING) << "worker " << options_.worker_id << ": could not leave: " << s;
  }
  absl::MutexLock lock(&mu_);
  if (!running_.job_id().empty()) {
    LM_LOG(INFO) << "job " << running_.job_id() << " attempt " << running_.attempt() << " rank "
                 << running_.rank() << ": abandoning at the next step boundary (worker stopping)";
    AbortLocked();
  }
  cv_.SignalAll();
}

void WorkerAgent::AckStepsLocked(int64_t sent_end) {
  const int64_t n =
      std::clamp<int64_t>(sent_end - steps_base_, 0, static_cast<int64_t>(steps_.size()));
  steps_.erase(steps_.begin(), steps_.begin() + n);
  steps_base_ += n;
}

v1::HeartbeatRequest WorkerAgent::MakeHeartbeatLocked(const v1::TaskRef& running) const {
  v1::HeartbeatRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_session_id(session_id_);
  if (!running.job_id().empty()) *request.mutable_running() = running;
  for (const auto& m : steps_) *request.add_steps() = m;
  request.set_eval_images_done(eval_done_);
  return request;
}

void WorkerAgent::HeartbeatLoop(const std::atomic<bool>* stop) {
  auto last_contact = std::chrono::steady_clock::now();
  while (!stop->load()) {
    std::chrono::milliseconds interval;
    v1::HeartbeatRequest request;
    int64_t sent_end = 0;
    {
      absl::MutexLock lock(&mu_);
      interval = interval_;
      request = MakeHeartbeatLocked(running_);
      sent_end = steps_base_ + static_cast<int64_t>(steps_.size());
      // Long poll: a task or abort arrives as soon as it is queued; the call itself
      // paces the loop.
      request.set_wait_ms(interval.count());
    }
    auto reply = client_->Heartbeat(request);
    if (reply.ok()) {
      last_contact = std::chrono::steady_clock::now();
      absl::MutexLock lock(&mu_);
      // Only what was sent is dropped; steps added meanwhile go with the next beat.
      AckStepsLocked(sent_end);
      if (reply->has_task()) {
        queue_.push_back(reply->task());
        cv_.SignalAll();
      }
      for (const v1::TaskRef& ref : reply->abort()) {
        if (SameTask(ref, running_)) {
          LM_LOG(WARNING) << "job " << ref.job_id() << " attempt " << ref.attempt() << " rank "
                          << ref.rank() << ": told to abandon it";
          AbortLocked();
        }
      }
    } else if (absl::IsNotFound(reply.status())) {
      LM_LOG(WARNING) << "worker " << options_.worker_id << ": " << reply.status()
                      << "; registering again";
      if (RegisterOnce().ok()) last_contact = std::chrono::steady_clock::now();
    } else {
      LM_LOG(WARNING) << "worker " << options_.worker_id
                      << ": heartbeat failed: " << reply.status();
      if (options_.coordinator_lost_after.count() > 0 &&
          std::chrono::steady_clock::now() - last_contact > options_.coordinator_lost_after) {
        LM_LOG(ERROR) << "worker " << options_.worker_id << ": coordinator unreachable for "
                      << options_.coordinator_lost_after.count() << " ms; stopping";
        lost_ = true;
        if (options_.health != nullptr) options_.health->SetReady(false);
        absl::MutexLock lock(&mu_);
        AbortLocked();
        cv_.SignalAll();
        return;
      }
    }
    if (reply.ok() && !reply->has_task() && reply->abort_size() == 0) continue;  // it waited
    absl::MutexLock lock(&mu_);
    const absl::Time until =
        absl::Now() + absl::FromChrono(reply.ok() ? std::chrono::milliseconds(0) : interval);
    while (!stop->load() && !cv_.WaitWithDeadline(&mu_, until)) {
    }
  }
  StopAndLeave();
}

absl::Status WorkerAgent::Run(const std::atomic<bool>* stop) {
  absl::Status v = options_.Validate();
  if (!v.ok()) return v;
  if (resources_.model->device.is_cuda()) {
    // Before registering: the coordinator sees the worker idle only once it is warm.
    const auto start = std::chrono::steady_clock::now();
    absl::Status warm;
    try {
      warm = WarmUpEval(resources_);
    } catch (const std::exception& e) {
      warm = absl::InternalError(e.what());
    }
    if (!warm.ok())
      LM_LOG(WARNING) << "worker " << options_.worker_id << ": warm-up failed: " << warm;
    LM_LOG(INFO) << "worker " << options_.worker_id << ": warm-up "
                 << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                              start)
                        .count()
                 << " ms";
  }
  // Register before anything else; retry while the coordinator starts.
  const auto first_try = std::chrono::steady_clock::now();
  while (true) {
    absl::Status s = RegisterOnce();
    if (s.ok()) break;
    if (stop->load()) return absl::CancelledError("stopped before registering");
    if (absl::IsInvalidArgument(s)) return s;
    if (options_.coordinator_lost_after.count() > 0 &&
        std::chrono::steady_clock::now() - first_try > options_.coordinator_lost_after) {
      return absl::UnavailableError(
          absl::StrCat("cannot register with ", options_.client.address, ": ", s.message()));
    }
    LM_LOG(WARNING) << "worker " << options_.worker_id << ": " << s << "; retrying";
    std::this_thread::sleep_for(options_.register_retry);
  }
  heartbeat_ = std::thread([this, stop] { HeartbeatLoop(stop); });
  while (!stop->load() && !lost_.load()) {
    v1::Task task;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time until = absl::Now() + absl::Milliseconds(200);
      while (queue_.empty() && !stop->load() && !lost_.load() &&
             !cv_.WaitWithDeadline(&mu_, until)) {
      }
      if (queue_.empty()) continue;
      task = queue_.front();
      queue_.pop_front();
      running_ = task.ref();
      eval_done_ = 0;
      abort_ = false;
    }
    RunTask(task);
  }
  {
    absl::MutexLock lock(&mu_);
    cv_.SignalAll();
  }
  if (heartbeat_.joinable()) heartbeat_.join();
  if (lost_) return absl::UnavailableError("the coordinator was lost");
  return absl::OkStatus();
}

void WorkerAgent::RunTask(const v1::Task& task) {
  TaskEnv env;
  env.client = client_.get();
  env.resources = resources_;
  env.collective_engine = options_.collective;
  env.gloo_host = options_.collective_host;
  env.abort = &abort_;
  env.eval_cache = &eval_cache_;
  {
    absl::MutexLock lock(&mu_);
    env.session_id = session_id_;
  }
  env.on_collective = [this](Collective* c) {
    absl::MutexLock lock(&mu_);
    collective_ = c;
    if (c != nullptr && abort_) c->Abort();
  };
  const bool rank0 = task.ref().rank() == 0;
  env.on_step = [this, rank0](const v1::StepMetrics& m) {
    metrics_.RecordStep(m);
    if (!rank0) return;  // the job's curve is rank 0's
    absl::MutexLock lock(&mu_);
    steps_.push_back(m);
  };
  env.on_eval_progress = [this](int64_t done) {
    absl::MutexLock lock(&mu_);
    metrics_.AddEvalAnswers(done - eval_done_);
    eval_done_ = done;
  };
  TaskOutcome outcome;
  // libtorch errors end the task, never the worker: this is the worker's one boundary.
  try {
    outcome = run_task_(task, env);
  } catch (const std::exception& e) {
    outcome.status = absl::InternalError(absl::StrCat("exception: ", e.what()));
    outcome.retryable = true;
  }
  const char* kind = task.has_train() ? "train" : "eval";
  metrics_.RecordTask(kind, outcome.status.ok() ? "ok" : abort_.load() ? "aborted" : "failed");
  if (!outcome.status.ok()) {
    LM_LOG(WARNING) << "job " << task.ref().job_id() << " attempt " << task.ref().attempt()
                    << " rank " << task.ref().rank() << " step " << outcome.step << ": " << kind
                    << " task ended: " << outcome.status;
  }
  if (leaving_.load()) {  // the session is gone: nobody takes a result
    absl::MutexLock lock(&mu_);
    running_.Clear();
    return;
  }
  v1::TaskResultRequest result;
  {
    absl::MutexLock lock(&mu_);
    result.set_session_id(session_id_);
  }
  result.set_worker_id(options_.worker_id);
  *result.mutable_ref() = task.ref();
  result.set_ok(outcome.status.ok());
  result.set_error(std::string(outcome.status.message()));
  result.set_retryable(outcome.retryable);
  result.set_eval_report_json(outcome.eval_report_json);
  result.set_step(outcome.step);
  // Flush rank 0's last metrics with one heartbeat before the result, so that the job's
  // curve is complete when it ends.
  v1::HeartbeatRequest flush;
  int64_t sent_end = 0;
  {
    absl::MutexLock lock(&mu_);
    flush = MakeHeartbeatLocked(task.ref());
    sent_end = steps_base_ + static_cast<int64_t>(steps_.size());
  }
  if (client_->Heartbeat(flush).ok()) {  // never under mu_: the heartbeat thread needs it
    absl::MutexLock lock(&mu_);
    AckStepsLocked(sent_end);
  }
  absl::Status s = client_->ReportTaskResult(result);
  if (!s.ok()) LM_LOG(WARNING) << "worker " << options_.worker_id << ": result not taken: " << s;
  absl::MutexLock lock(&mu_);
  running_.Clear();
  abort_ = false;
}

}  // namespace llava
