#include "tests/fake_coordinator.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/sha256.h"

namespace llava::testing {

const char* FakeCoordinator::Name(Call call) {
  switch (call) {
    case Call::kRegister:
      return "Register";
    case Call::kHeartbeat:
      return "Heartbeat";
    case Call::kReportTaskResult:
      return "ReportTaskResult";
    case Call::kGetShard:
      return "GetShard";
    case Call::kLeave:
      return "Leave";
    case Call::kUpload:
      return "UploadCheckpoint";
    case Call::kDownload:
      return "DownloadCheckpoint";
    case Call::kSet:
      return "Set";
    case Call::kGet:
      return "Get";
  }
  return "?";
}

void FakeCoordinator::set_heartbeat_interval(std::chrono::milliseconds interval) {
  absl::MutexLock lock(&mu_);
  interval_ = interval;
}

void FakeCoordinator::FailNext(Call call, absl::Status error, int times) {
  absl::MutexLock lock(&mu_);
  failures_[call] = Failure{std::move(error), times};
}

void FakeCoordinator::FailAlways(Call call, absl::Status error) {
  absl::MutexLock lock(&mu_);
  failures_[call] = Failure{std::move(error), -1};
}

void FakeCoordinator::ClearFailure(Call call) {
  absl::MutexLock lock(&mu_);
  failures_.erase(call);
}

void FakeCoordinator::QueueTask(const v1::Task& task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(task);
  mail_.SignalAll();
}

void FakeCoordinator::QueueAbort(const v1::TaskRef& ref) {
  absl::MutexLock lock(&mu_);
  aborts_.push_back(ref);
  mail_.SignalAll();
}

void FakeCoordinator::ForgetSessions() {
  absl::MutexLock lock(&mu_);
  session_.clear();
  tasks_.clear();
  aborts_.clear();
  ++generation_;
  mail_.SignalAll();
}

void FakeCoordinator::SetShards(ShardSource source) {
  absl::MutexLock lock(&mu_);
  shards_ = std::move(source);
}

void FakeCoordinator::PutCheckpoint(const std::string& checkpoint_id, std::string bytes) {
  absl::MutexLock lock(&mu_);
  checkpoints_[checkpoint_id] = std::move(bytes);
}

std::vector<FakeCoordinator::Call> FakeCoordinator::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int64_t FakeCoordinator::count(Call call) const {
  absl::MutexLock lock(&mu_);
  return std::count(calls_.begin(), calls_.end(), call);
}

std::string FakeCoordinator::session() const {
  absl::MutexLock lock(&mu_);
  return session_;
}

std::vector<v1::WorkerInfo> FakeCoordinator::registrations() const {
  absl::MutexLock lock(&mu_);
  return registrations_;
}

std::vector<v1::HeartbeatRequest> FakeCoordinator::heartbeats() const {
  absl::MutexLock lock(&mu_);
  return heartbeats_;
}

std::vector<v1::TaskResultRequest> FakeCoordinator::results() const {
  absl::MutexLock lock(&mu_);
  return results_;
}

std::vector<v1::HeartbeatRequest> FakeCoordinator::heartbeats_at_result(size_t i) const {
  absl::MutexLock lock(&mu_);
  if (i >= heartbeats_at_result_.size()) return {};
  return std::vector<v1::HeartbeatRequest>(heartbeats_.begin(),
                                           heartbeats_.begin() + heartbeats_at_result_[i]);
}

std::vector<std::string> FakeCoordinator::leaves() const {
  absl::MutexLock lock(&mu_);
  return leaves_;
}

std::vector<v1::CheckpointHeader> FakeCoordinator::uploads() const {
  absl::MutexLock lock(&mu_);
  return uploads_;
}

absl::Status FakeCoordinator::Enter(Call call) {
  absl::MutexLock lock(&mu_);
  calls_.push_back(call);
  auto it = failures_.find(call);
  if (it == failures_.end()) return absl::OkStatus();
  absl::Status error = it->second.error;
  if (it->second.remaining > 0 && --it->second.remaining == 0) failures_.erase(it);
  return error;
}

absl::Status FakeCoordinator::CheckSessionLocked(const std::string& worker_id,
                                                 const std::string& session_id) const {
  if (session_.empty() || worker_id != worker_id_ || session_id != session_) {
    return absl::NotFoundError(
        absl::StrCat("worker '", worker_id, "' session '", session_id, "' is not registered"));
  }
  return absl::OkStatus();
}

bool FakeCoordinator::HasMailLocked() const { return !tasks_.empty() || !aborts_.empty(); }

absl::StatusOr<v1::RegisterWorkerResponse> FakeCoordinator::Register(const v1::WorkerInfo& info) {
  if (absl::Status s = Enter(Call::kRegister); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  registrations_.push_back(info);
  worker_id_ = info.worker_id();
  session_ = absl::StrCat("session-", ++sessions_made_);
  // As the real registry: a new session starts with an empty mailbox.
  tasks_.clear();
  aborts_.clear();
  ++generation_;  // a long poll of the old session ends NOT_FOUND
  mail_.SignalAll();
  v1::RegisterWorkerResponse reply;
  reply.set_session_id(session_);
  reply.set_heartbeat_interval_ms(interval_.count());
  return reply;
}

void FakeCoordinator::SetSession(const std::string& worker_id, const std::string& session_id) {
  absl::MutexLock lock(&mu_);
  client_session_ = session_id;
}

absl::StatusOr<v1::HeartbeatResponse> FakeCoordinator::Heartbeat(
    const v1::HeartbeatRequest& request) {
  if (absl::Status s = Enter(Call::kHeartbeat); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckSessionLocked(request.worker_id(), request.session_id()); !s.ok())
    return s;
  heartbeats_.push_back(request);
  // Long poll: until mail comes, the session is forgotten, or the wait ends.
  const int64_t generation = generation_;
  const absl::Time until = absl::Now() + absl::Milliseconds(request.wait_ms());
  while (!HasMailLocked() && generation_ == generation && !mail_.WaitWithDeadline(&mu_, until)) {
  }
  if (generation_ != generation) {
    return absl::NotFoundError(absl::StrCat("worker '", request.worker_id(), "' session '",
                                            request.session_id(), "' is not registered"));
  }
  v1::HeartbeatResponse reply;
  if (!tasks_.empty()) {
    *reply.mutable_task() = tasks_.front();
    tasks_.pop_front();
  }
  for (const v1::TaskRef& ref : aborts_) *reply.add_abort() = ref;
  aborts_.clear();
  return reply;
}

absl::Status FakeCoordinator::ReportTaskResult(const v1::TaskResultRequest& request) {
  if (absl::Status s = Enter(Call::kReportTaskResult); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckSessionLocked(request.worker_id(), request.session_id()); !s.ok())
    return s;
  results_.push_back(request);
  heartbeats_at_result_.push_back(heartbeats_.size());
  return absl::OkStatus();
}

absl::StatusOr<v1::Shard> FakeCoordinator::GetShard(const v1::TaskRef& ref, int64_t epoch) {
  if (absl::Status s = Enter(Call::kGetShard); !s.ok()) return s;
  ShardSource source;
  {
    absl::MutexLock lock(&mu_);
    if (!shards_) return absl::FailedPreconditionError("GetShard: the test scripted no shards");
    source = shards_;
  }
  return source(ref, epoch);
}

absl::Status FakeCoordinator::Leave(const std::string& worker_id, const std::string& session_id,
                                    const std::string& reason) {
  if (absl::Status s = Enter(Call::kLeave); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckSessionLocked(worker_id, session_id); !s.ok()) return s;
  leaves_.push_back(reason);
  session_.clear();
  ++generation_;
  mail_.SignalAll();
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckpointInfo> FakeCoordinator::UploadCheckpoint(v1::CheckpointHeader header,
                                                                     const std::string& bytes) {
  if (absl::Status s = Enter(Call::kUpload); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  // The real client stamps the header with the session it was given.
  if (absl::Status s = CheckSessionLocked(worker_id_, client_session_); !s.ok()) return s;
  const std::string id = absl::StrCat(header.ref().job_id(), "/step-", header.step());
  header.set_checkpoint_id(id);
  header.set_total_bytes(static_cast<int64_t>(bytes.size()));
  header.set_sha256(Sha256Hex(bytes));
  uploads_.push_back(header);
  checkpoints_[id] = bytes;
  v1::CheckpointInfo info;
  info.set_checkpoint_id(id);
  info.set_job_id(header.ref().job_id());
  info.set_step(header.step());
  info.set_final(header.final());
  info.set_sha256(header.sha256());
  return info;
}

absl::StatusOr<CheckpointDownload> FakeCoordinator::DownloadCheckpoint(
    const std::string& checkpoint, bool projector_only) {
  if (absl::Status s = Enter(Call::kDownload); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = checkpoints_.find(checkpoint);
  if (it == checkpoints_.end())
    return absl::NotFoundError(absl::StrCat("no checkpoint '", checkpoint, "'"));
  CheckpointDownload out;
  out.header.set_checkpoint_id(checkpoint);
  out.header.set_projector_only(projector_only);
  out.header.set_total_bytes(static_cast<int64_t>(it->second.size()));
  out.header.set_sha256(Sha256Hex(it->second));
  out.bytes = it->second;
  return out;
}

absl::Status FakeCoordinator::Set(const std::string& key, const std::string& value) {
  if (absl::Status s = Enter(Call::kSet); !s.ok()) return s;
  return rendezvous_.Set(key, value);
}

absl::StatusOr<std::string> FakeCoordinator::Get(const std::string& key,
                                                 std::chrono::milliseconds wait) {
  if (absl::Status s = Enter(Call::kGet); !s.ok()) return s;
  return rendezvous_.Get(key, wait);
}

bool WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace llava::testing
