#include "coordinator/rendezvous_store.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace llava {

std::string RendezvousStore::ScopeOf(const std::string& key) {
  const size_t first = key.find('/');
  if (first == std::string::npos) return key;
  const size_t second = key.find('/', first + 1);
  return second == std::string::npos ? key : key.substr(0, second + 1);
}

void RendezvousStore::Account(const std::string& key, int64_t value_bytes, int sign) {
  const int64_t bytes = static_cast<int64_t>(key.size()) + value_bytes;
  Usage& u = scopes_[ScopeOf(key)];
  u.keys += sign;
  u.bytes += sign * bytes;
  total_bytes_ += sign * bytes;
  if (u.keys == 0) scopes_.erase(ScopeOf(key));
}

absl::Status RendezvousStore::Set(const std::string& key, std::string value) {
  if (key.empty()) return absl::InvalidArgumentError("rendezvous: empty key");
  if (static_cast<int64_t>(key.size()) > limits_.max_key_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous: a key of ", key.size(),
                                                   " bytes is over the limit of ",
                                                   limits_.max_key_bytes));
  }
  if (static_cast<int64_t>(value.size()) > limits_.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous: value of '", key, "' is ",
                                                   value.size(), " bytes, over the limit of ",
                                                   limits_.max_value_bytes));
  }
  {
    absl::MutexLock lock(&mu_);
    if (values_.count(key) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("rendezvous: '", key, "' is already set"));
    }
    const int64_t bytes = static_cast<int64_t>(key.size() + value.size());
    auto scope = scopes_.find(ScopeOf(key));
    const Usage used = scope == scopes_.end() ? Usage() : scope->second;
    if (static_cast<int64_t>(values_.size()) >= limits_.max_keys ||
        total_bytes_ + bytes > limits_.max_total_bytes) {
      return absl::ResourceExhaustedError("rendezvous: the store is full");
    }
    if (used.keys + 1 > limits_.max_scope_keys || used.bytes + bytes > limits_.max_scope_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("rendezvous: '", ScopeOf(key), "' holds ", used.keys, " keys and ",
                       used.bytes, " bytes: its quota (", limits_.max_scope_keys, " keys, ",
                       limits_.max_scope_bytes, " bytes) is used up"));
    }
    Account(key, static_cast<int64_t>(value.size()), +1);
    values_.emplace(key, std::move(value));
  }
  cv_.SignalAll();
  return absl::OkStatus();
}

absl::StatusOr<std::string> RendezvousStore::Get(const std::string& key,
                                                 std::chrono::milliseconds wait) {
  absl::MutexLock lock(&mu_);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    if (shut_down_) return absl::UnavailableError("rendezvous: the coordinator is shutting down");
    auto it = values_.find(key);
    if (it != values_.end()) return it->second;
    if (cv_.WaitWithTimeout(&mu_, absl::FromChrono(deadline - std::chrono::steady_clock::now())) &&
        values_.count(key) == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("rendezvous: '", key, "' not set within ", wait.count(), " ms"));
    }
  }
}

void RendezvousStore::ErasePrefix(const std::string& prefix) {
  {
    absl::MutexLock lock(&mu_);
    auto it = values_.lower_bound(prefix);
    while (it != values_.end() && it->first.compare(0, prefix.size(), prefix) == 0) {
      Account(it->first, static_cast<int64_t>(it->second.size()), -1);
      it = values_.erase(it);
    }
  }
  cv_.SignalAll();  // waiters re-check whether their attempt still runs
}

void RendezvousStore::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
  }
  cv_.SignalAll();
}

size_t RendezvousStore::size() const {
  absl::MutexLock lock(&mu_);
  return values_.size();
}

int64_t RendezvousStore::bytes() const {
  absl::MutexLock lock(&mu_);
  return total_bytes_;
}

}  // namespace llava
