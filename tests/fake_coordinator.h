// An in-memory coordinator for a worker's unit tests, behind the WorkerCoordinator role
// (worker/coordinator_roles.h): sessions (NOT_FOUND for a session it does not hold, as the
// real registry answers), a mailbox of tasks and aborts that heartbeats long-poll, shards
// from a function the test gives, a checkpoint store, and the real RendezvousStore. A test
// scripts errors per method (the next N calls, or every call until cleared), "replaces"
// the coordinator (every session forgotten), and reads back every call in order.
// Thread-safe: one mutex; a heartbeat's long poll waits on it.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/rendezvous_store.h"
#include "worker/coordinator_roles.h"

namespace llava::testing {

class FakeCoordinator : public WorkerCoordinator {
 public:
  enum class Call {
    kRegister,
    kHeartbeat,
    kReportTaskResult,
    kGetShard,
    kLeave,
    kUpload,
    kDownload,
    kSet,
    kGet
  };
  static const char* Name(Call call);

  using ShardSource =
      std::function<absl::StatusOr<v1::Shard>(const v1::TaskRef& ref, int64_t epoch)>;

  FakeCoordinator() = default;

  // --- Scripting.
  // What Register answers as the heartbeat interval (and so the long poll's length).
  void set_heartbeat_interval(std::chrono::milliseconds interval);
  // The next `times` calls of `call` fail with `error` (counted as calls, nothing else done).
  void FailNext(Call call, absl::Status error, int times = 1);
  // Every call of `call` fails with `error` until ClearFailure(call).
  void FailAlways(Call call, absl::Status error);
  void ClearFailure(Call call);
  // Delivered by the current session's next heartbeat (which a waiting long poll is).
  void QueueTask(const v1::Task& task);
  void QueueAbort(const v1::TaskRef& ref);
  // A new coordinator took over: every session is unknown (heartbeats answer NOT_FOUND,
  // a waiting long poll at once), and the mailbox is empty.
  void ForgetSessions();
  void SetShards(ShardSource source);
  // A checkpoint as DownloadCheckpoint serves it (the same bytes whether projector_only
  // or not).
  void PutCheckpoint(const std::string& checkpoint_id, std::string bytes);

  // --- What happened.
  std::vector<Call> calls() const;
  int64_t count(Call call) const;
  // The current session ("" before the first Register, or after ForgetSessions or Leave).
  std::string session() const;
  std::vector<v1::WorkerInfo> registrations() const;
  std::vector<v1::HeartbeatRequest> heartbeats() const;  // of a known session, as received
  std::vector<v1::TaskResultRequest> results() const;    // those accepted
  // The heartbeats received before the i-th accepted result.
  std::vector<v1::HeartbeatRequest> heartbeats_at_result(size_t i) const;
  std::vector<std::string> leaves() const;            // reasons given
  std::vector<v1::CheckpointHeader> uploads() const;  // those stored
  RendezvousStore& rendezvous() { return rendezvous_; }

  // --- WorkerCoordinator.
  absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::WorkerInfo& info) override;
  void SetSession(const std::string& worker_id, const std::string& session_id) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) override;
  absl::Status ReportTaskResult(const v1::TaskResultRequest& request) override;
  absl::StatusOr<v1::Shard> GetShard(const v1::TaskRef& ref, int64_t epoch) override;
  absl::Status Leave(const std::string& worker_id, const std::string& session_id,
                     const std::string& reason) override;
  absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(v1::CheckpointHeader header,
                                                      const std::string& bytes) override;
  absl::StatusOr<CheckpointDownload> DownloadCheckpoint(const std::string& checkpoint,
                                                        bool projector_only = false) override;
  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds wait) override;

 private:
  struct Failure {
    absl::Status error;
    int remaining = 0;  // -1: every call
  };
  // Records the call; the scripted error if one is due.
  absl::Status Enter(Call call) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CheckSessionLocked(const std::string& worker_id, const std::string& session_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasMailLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::CondVar mail_;  // the mailbox got something, or the session ended
  std::chrono::milliseconds interval_ ABSL_GUARDED_BY(mu_){20};
  std::map<Call, Failure> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  int64_t sessions_made_ ABSL_GUARDED_BY(mu_) = 0;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  std::string session_ ABSL_GUARDED_BY(mu_);
  std::string client_session_ ABSL_GUARDED_BY(mu_);  // as the worker set it
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;      // bumped whenever a session ends
  std::deque<v1::Task> tasks_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::TaskRef> aborts_ ABSL_GUARDED_BY(mu_);
  ShardSource shards_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> checkpoints_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WorkerInfo> registrations_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::HeartbeatRequest> heartbeats_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::TaskResultRequest> results_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> heartbeats_at_result_ ABSL_GUARDED_BY(mu_);  // heartbeats_.size() then
  std::vector<std::string> leaves_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::CheckpointHeader> uploads_ ABSL_GUARDED_BY(mu_);
  RendezvousStore rendezvous_;
};

// Polls `done` until it holds (true) or `timeout` passes (false).
bool WaitUntil(const std::function<bool()>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(20));

}  // namespace llava::testing
