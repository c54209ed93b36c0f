#include "coordinator/rendezvous_store.h"

#include "absl/strings/str_cat.h"

namespace llava {

absl::Status RendezvousStore::Set(const std::string& key, std::string value) {
  if (key.empty()) return absl::InvalidArgumentError("rendezvous: empty key");
  if (static_cast<int64_t>(value.size()) > limits_.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous: value of '", key, "' is ",
                                                   value.size(), " bytes, over the limit of ",
                                                   limits_.max_value_bytes));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (values_.count(key) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("rendezvous: '", key, "' is already set"));
    }
    if (static_cast<int64_t>(values_.size()) >= limits_.max_keys) {
      return absl::ResourceExhaustedError("rendezvous: too many keys");
    }
    values_.emplace(key, std::move(value));
  }
  cv_.notify_all();
  return absl::OkStatus();
}

absl::StatusOr<std::string> RendezvousStore::Get(const std::string& key,
                                                 std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    auto it = values_.find(key);
    if (it != values_.end()) return it->second;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout &&
        values_.count(key) == 0) {
      return absl::DeadlineExceededError(absl::StrCat("rendezvous: '", key, "' not set within ",
                                                      wait.count(), " ms"));
    }
  }
}

void RendezvousStore::ErasePrefix(const std::string& prefix) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = values_.lower_bound(prefix);
  while (it != values_.end() && it->first.compare(0, prefix.size(), prefix) == 0) {
    it = values_.erase(it);
  }
}

size_t RendezvousStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return values_.size();
}

}  // namespace llava
