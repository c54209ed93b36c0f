// The coordinator's view of its workers: registrations (one live session per worker id;
// a session id is 128 random bits, so that no caller can guess another's), liveness from
// heartbeats, and the per-worker mailbox of tasks to start and tasks to abandon that the
// next heartbeat response carries. Knows nothing of jobs. Bounded: at most max_workers
// records (silent ones make room for new ones). Thread-safe: one mutex; callers pass
// `now` so that timing is testable.
#pragma once

#include <chrono>
#include <cstdint>
#include <climits>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "protos/llava.pb.h"

namespace llava {

using Clock = std::chrono::steady_clock;

class WorkerRegistry {
 public:
  explicit WorkerRegistry(std::chrono::milliseconds worker_timeout, int64_t max_workers = 4096)
      : worker_timeout_(worker_timeout), max_workers_(max_workers) {}

  // A new session for info.worker_id, replacing an earlier one that is no longer live
  // (whose tasks are then lost: IsLive() on the old session turns false). INVALID_ARGUMENT
  // for a malformed field; ALREADY_EXISTS while the id has a live session (a second
  // process with the same id, or a caller posing as a worker); RESOURCE_EXHAUSTED when
  // max_workers live workers are registered.
  absl::StatusOr<std::string> Register(const v1::WorkerInfo& info, Clock::time_point now);

  // Records the heartbeat and hands out the mailbox. NOT_FOUND for an unknown or replaced
  // session.
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request,
                                                  Clock::time_point now);
  // Long poll after Heartbeat() found nothing: waits until a task or an abort is queued
  // for the session (then takes it) or `deadline`; refreshes liveness on return.
  // NOT_FOUND if the session was replaced meanwhile.
  absl::StatusOr<v1::HeartbeatResponse> WaitForMail(const std::string& worker_id,
                                                    const std::string& session_id,
                                                    Clock::time_point deadline);
  // NOT_FOUND unless (worker_id, session_id) is the current session.
  absl::Status CheckSession(const std::string& worker_id, const std::string& session_id) const;

  struct Candidate {
    std::string worker_id;
    std::string session_id;
    v1::WorkerInfo info;
  };
  // Live workers with nothing reserved and no task running, by worker id.
  std::vector<Candidate> Idle(Clock::time_point now) const;
  bool IsLive(const std::string& worker_id, const std::string& session_id,
              Clock::time_point now) const;
  // Live workers whose model is `model` (any model if empty).
  int64_t CountLive(const std::string& model, Clock::time_point now) const;

  // Reserves the worker for `task` and queues it for the next heartbeat.
  void Assign(const std::string& worker_id, const std::string& session_id, const v1::Task& task);
  // Frees the worker's reservation; with `abort`, the worker is also told to abandon the
  // task (it stays busy until a heartbeat shows it stopped).
  void Release(const std::string& worker_id, const std::string& session_id, const v1::TaskRef& task,
               bool abort);

  // By worker id, after `after` (empty: from the first), at most `limit`.
  std::vector<v1::WorkerStatus> List(Clock::time_point now, const std::string& after = "",
                                     int64_t limit = INT64_MAX) const;
  // Ends every long poll now (the coordinator is stopping).
  void Shutdown();

  // Ends the session (a worker shutting down): it is no longer live, and its record goes.
  // NOT_FOUND unless (worker_id, session_id) is the current session.
  absl::Status Leave(const std::string& worker_id, const std::string& session_id,
                     const std::string& reason);
  // Why a session is not live, in words for a job's restart reason: "it left (...)",
  // "it registered again", "no heartbeat for N ms".
  std::string GoneReason(const std::string& worker_id, const std::string& session_id,
                         Clock::time_point now) const;

 private:
  struct Record {
    v1::WorkerInfo info;
    std::string session_id;
    Clock::time_point last_seen;
    int64_t last_seen_unix_ms = 0;
    bool reserved = false;
    std::optional<v1::Task> to_start;   // delivered by the next heartbeat
    std::vector<v1::TaskRef> to_abort;  // delivered by the next heartbeat
    v1::TaskRef running;                // as last reported (empty job_id: idle)
  };
  bool Live(const Record& r, Clock::time_point now) const {
    return now - r.last_seen <= worker_timeout_;
  }

  const std::chrono::milliseconds worker_timeout_;
  const int64_t max_workers_;
  // Takes the record's mailbox into `response`.
  static void TakeMail(Record& r, v1::HeartbeatResponse* response);

  mutable absl::Mutex mu_;
  absl::CondVar mail_;  // a mailbox got something
  std::map<std::string, Record> workers_ ABSL_GUARDED_BY(mu_);
  // Sessions that left, with their reason; the newest few, for GoneReason.
  std::deque<std::pair<std::string, std::string>> left_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace llava
