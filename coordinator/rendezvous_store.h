// The collective groups' rendezvous: a write-once key-value store (Gloo's store; rank 0
// publishes the NCCL unique id in it). Keys are scoped by each attempt's prefix and erased
// when the attempt ends. Thread-safe: one mutex; Get blocks on a condition variable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"

namespace llava {

class RendezvousStore {
 public:
  struct Limits {
    int64_t max_keys = 100000;
    int64_t max_value_bytes = 1 << 20;
  };
  RendezvousStore() = default;
  explicit RendezvousStore(Limits limits) : limits_(limits) {}

  // ALREADY_EXISTS if the key is set: a second writer (a second rank 0) is refused.
  absl::Status Set(const std::string& key, std::string value);
  // Waits up to `wait` for the key; DEADLINE_EXCEEDED after.
  absl::StatusOr<std::string> Get(const std::string& key, std::chrono::milliseconds wait);
  void ErasePrefix(const std::string& prefix);
  size_t size() const;

 private:
  Limits limits_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> values_;  // guarded by mu_
};

}  // namespace llava
