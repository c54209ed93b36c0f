// The collective groups' rendezvous: a write-once key-value store (Gloo's store; rank 0
// publishes the NCCL unique id in it). Keys are scoped by each attempt's prefix
// ("<job>/attempt-<N>/", the key up to its second '/') and erased when the attempt ends.
// Bounded: each key, value, scope and the whole store have limits, so that no caller can
// grow the coordinator's memory without end. Thread-safe: one mutex; Get blocks on a
// condition variable until the key is set, the wait ends, or Shutdown().
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"

namespace llava {

class RendezvousStore {
 public:
  struct Limits {
    int64_t max_keys = 100000;
    int64_t max_key_bytes = 512;
    int64_t max_value_bytes = 1 << 20;
    // One attempt's keys together (a group of 1,024 Gloo ranks publishes ~1 KB each).
    int64_t max_scope_keys = 8192;
    int64_t max_scope_bytes = int64_t{16} << 20;
    int64_t max_total_bytes = int64_t{256} << 20;
  };
  RendezvousStore() = default;
  explicit RendezvousStore(Limits limits) : limits_(limits) {}

  // ALREADY_EXISTS if the key is set: a second writer (a second rank 0) is refused.
  // RESOURCE_EXHAUSTED past a limit; INVALID_ARGUMENT for an empty or oversized key.
  absl::Status Set(const std::string& key, std::string value);
  // Waits up to `wait` for the key; DEADLINE_EXCEEDED after; UNAVAILABLE once shut down.
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds wait);
  void ErasePrefix(const std::string& prefix);
  // Ends every wait now and refuses later ones.
  void Shutdown();
  size_t size() const;
  int64_t bytes() const;

  // "<job>/attempt-<N>/" of a key (the key itself when it has fewer than two '/').
  static std::string ScopeOf(const std::string& key);

 private:
  struct Usage {
    int64_t keys = 0;
    int64_t bytes = 0;
  };
  void Account(const std::string& key, int64_t value_bytes, int sign)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Limits limits_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Usage> scopes_ ABSL_GUARDED_BY(mu_);
  int64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace llava
