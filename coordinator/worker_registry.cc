#include "coordinator/worker_registry.h"

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/job_spec.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace llava {
namespace {

absl::Status CheckInfo(const v1::WorkerInfo& info) {
  LM_RETURN_IF_ERROR(CheckId("RegisterWorker: worker_id", info.worker_id()));
  LM_RETURN_IF_ERROR(CheckText("RegisterWorker: device", info.device(), 64, /*allow_empty=*/false));
  LM_RETURN_IF_ERROR(CheckText("RegisterWorker: model", info.model(), JobLimits::kMaxModelBytes));
  LM_RETURN_IF_ERROR(CheckText("RegisterWorker: collective_host", info.collective_host(), 253));
  if (info.collective() != "gloo" && info.collective() != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("RegisterWorker: collective must be gloo or nccl, got '",
                     ForLog(info.collective(), 32), "'"));
  }
  LM_RETURN_IF_ERROR(CheckRange("RegisterWorker: hidden_size", info.hidden_size(), 1, 1 << 20));
  LM_RETURN_IF_ERROR(CheckRange("RegisterWorker: train_images", info.train_images(), 0, 10000000));
  LM_RETURN_IF_ERROR(CheckRange("RegisterWorker: test_images", info.test_images(), 0, 10000000));
  return absl::OkStatus();
}

// 128 bits from the system's CSPRNG, as hex: a session is a capability.
absl::StatusOr<std::string> NewSessionId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::UnavailableError("RegisterWorker: no randomness for a session id");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

}  // namespace

absl::StatusOr<std::string> WorkerRegistry::Register(const v1::WorkerInfo& info,
                                                     Clock::time_point now) {
  LM_RETURN_IF_ERROR(CheckInfo(info));
  LM_ASSIGN_OR_RETURN(std::string session, NewSessionId());
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(info.worker_id());
  if (it != workers_.end() && Live(it->second, now)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "RegisterWorker: worker '", info.worker_id(),
        "' has a live session; a restarted worker is taken once the old session leaves or is "
        "silent for ",
        worker_timeout_.count(), " ms"));
  }
  if (it == workers_.end() && static_cast<int64_t>(workers_.size()) >= max_workers_) {
    for (auto w = workers_.begin(); w != workers_.end();) {
      w = Live(w->second, now) ? std::next(w) : workers_.erase(w);
    }
    if (static_cast<int64_t>(workers_.size()) >= max_workers_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("RegisterWorker: ", max_workers_, " workers are registered (the limit)"));
    }
  }
  mail_.SignalAll();  // a long poll of the replaced session ends (NOT_FOUND)
  Record& r = workers_[info.worker_id()];
  r = Record();  // a new session starts with an empty mailbox and no reservation
  r.info = info;
  r.session_id = std::move(session);
  r.last_seen = now;
  r.last_seen_unix_ms = absl::ToUnixMillis(absl::Now());
  return r.session_id;
}

void WorkerRegistry::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  mail_.SignalAll();
}

absl::StatusOr<v1::HeartbeatResponse> WorkerRegistry::Heartbeat(const v1::HeartbeatRequest& request,
                                                                Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(request.worker_id());
  if (it == workers_.end() || it->second.session_id != request.session_id()) {
    return absl::NotFoundError(absl::StrCat("worker '", request.worker_id(), "' session '",
                                            request.session_id(), "' is not registered"));
  }
  Record& r = it->second;
  r.last_seen = now;
  r.last_seen_unix_ms = absl::ToUnixMillis(absl::Now());
  r.running = request.running();
  v1::HeartbeatResponse response;
  TakeMail(r, &response);
  return response;
}

void WorkerRegistry::TakeMail(Record& r, v1::HeartbeatResponse* response) {
  if (r.to_start) {
    *response->mutable_task() = *r.to_start;
    r.to_start.reset();
  }
  for (const v1::TaskRef& ref : r.to_abort) *response->add_abort() = ref;
  r.to_abort.clear();
}

absl::StatusOr<v1::HeartbeatResponse> WorkerRegistry::WaitForMail(const std::string& worker_id,
                                                                  const std::string& session_id,
                                                                  Clock::time_point deadline) {
  absl::MutexLock lock(&mu_);
  while (true) {
    auto it = workers_.find(worker_id);
    if (it == workers_.end() || it->second.session_id != session_id) {
      return absl::NotFoundError(
          absl::StrCat("worker '", worker_id, "' session '", session_id, "' is not registered"));
    }
    Record& r = it->second;
    if (r.to_start || !r.to_abort.empty() || Clock::now() >= deadline || shut_down_) {
      // A worker held in a long poll is alive: it is waiting on us.
      r.last_seen = Clock::now();
      r.last_seen_unix_ms = absl::ToUnixMillis(absl::Now());
      v1::HeartbeatResponse response;
      TakeMail(r, &response);
      return response;
    }
    mail_.WaitWithTimeout(&mu_, absl::FromChrono(deadline - Clock::now()));
  }
}

absl::Status WorkerRegistry::CheckSession(const std::string& worker_id,
                                          const std::string& session_id) const {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.session_id != session_id) {
    return absl::NotFoundError(
        absl::StrCat("worker '", worker_id, "' session '", session_id, "' is not registered"));
  }
  return absl::OkStatus();
}

std::vector<WorkerRegistry::Candidate> WorkerRegistry::Idle(Clock::time_point now) const {
  absl::MutexLock lock(&mu_);
  std::vector<Candidate> out;
  for (const auto& [id, r] : workers_) {
    if (Live(r, now) && !r.reserved && r.running.job_id().empty() && !r.to_start) {
      out.push_back({id, r.session_id, r.info});
    }
  }
  return out;
}

bool WorkerRegistry::IsLive(const std::string& worker_id, const std::string& session_id,
                            Clock::time_point now) const {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  return it != workers_.end() && it->second.session_id == session_id && Live(it->second, now);
}

int64_t WorkerRegistry::CountLive(const std::string& model, Clock::time_point now) const {
  absl::MutexLock lock(&mu_);
  int64_t n = 0;
  for (const auto& [id, r] : workers_) {
    if (Live(r, now) && (model.empty() || r.info.model() == model)) ++n;
  }
  return n;
}

void WorkerRegistry::Assign(const std::string& worker_id, const std::string& session_id,
                            const v1::Task& task) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.session_id != session_id) return;
  it->second.reserved = true;
  it->second.to_start = task;
  mail_.SignalAll();
}

void WorkerRegistry::Release(const std::string& worker_id, const std::string& session_id,
                             const v1::TaskRef& task, bool abort) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.session_id != session_id) return;
  Record& r = it->second;
  r.reserved = false;
  if (r.to_start && SameTask(r.to_start->ref(), task)) {
    r.to_start.reset();  // never delivered: nothing to abort
  } else if (abort) {
    r.to_abort.push_back(task);
    mail_.SignalAll();
  }
  if (SameTask(r.running, task) && !abort) r.running.Clear();
}

absl::Status WorkerRegistry::Leave(const std::string& worker_id, const std::string& session_id,
                                   const std::string& reason) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.session_id != session_id) {
    return absl::NotFoundError(
        absl::StrCat("no session '", session_id, "' of worker '", worker_id, "'"));
  }
  workers_.erase(it);
  constexpr size_t kLeftKept = 256;
  left_.emplace_back(session_id, reason.empty() ? "no reason given" : ForLog(reason, 512));
  if (left_.size() > kLeftKept) left_.pop_front();
  mail_.SignalAll();  // a long poll of this session ends (NOT_FOUND)
  return absl::OkStatus();
}

std::string WorkerRegistry::GoneReason(const std::string& worker_id, const std::string& session_id,
                                       Clock::time_point now) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [session, reason] : left_) {
    if (session == session_id) return absl::StrCat("it left (", reason, ")");
  }
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return "it is no longer registered";
  if (it->second.session_id != session_id) return "it registered again (a restart)";
  if (!Live(it->second, now)) {
    return absl::StrCat(
        "no heartbeat for ",
        std::chrono::duration_cast<std::chrono::milliseconds>(now - it->second.last_seen).count(),
        " ms");
  }
  return "it is live";
}

std::vector<v1::WorkerStatus> WorkerRegistry::List(Clock::time_point now, const std::string& after,
                                                   int64_t limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::WorkerStatus> out;
  for (auto it = after.empty() ? workers_.begin() : workers_.upper_bound(after);
       it != workers_.end() && static_cast<int64_t>(out.size()) < limit; ++it) {
    const auto& [id, r] = *it;
    v1::WorkerStatus s;
    *s.mutable_info() = r.info;
    s.set_alive(Live(r, now));
    if (!r.running.job_id().empty()) *s.mutable_running() = r.running;
    s.set_last_heartbeat_unix_ms(r.last_seen_unix_ms);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace llava
