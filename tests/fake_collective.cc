#include "tests/fake_collective.h"

#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"

namespace llava::testing {
namespace {

// What a task owns: a handle that forwards to the test's group.
class Handle : public Collective {
 public:
  explicit Handle(FakeCollective* group) : group_(group) {}
  absl::Status AllReduceSum(at::Tensor& buffer) override { return group_->AllReduceSum(buffer); }
  absl::Status Broadcast(at::Tensor& buffer, int64_t root) override {
    return group_->Broadcast(buffer, root);
  }
  void Abort() override { group_->Abort(); }

 private:
  FakeCollective* group_;
};

}  // namespace

void FakeCollective::FailAllReduce(int64_t nth, absl::Status error) {
  absl::MutexLock lock(&mu_);
  fail_all_reduce_at_ = nth;
  all_reduce_error_ = std::move(error);
}

void FakeCollective::FailBroadcast(int64_t nth, absl::Status error) {
  absl::MutexLock lock(&mu_);
  fail_broadcast_at_ = nth;
  broadcast_error_ = std::move(error);
}

void FakeCollective::HangAllReduce(int64_t nth) {
  absl::MutexLock lock(&mu_);
  hang_at_ = nth;
}

void FakeCollective::PoisonAllReduce(int64_t nth) {
  absl::MutexLock lock(&mu_);
  poison_at_ = nth;
}

absl::Status FakeCollective::BrokenLocked() const {
  if (aborted_) return absl::AbortedError("fake collective: aborted");
  if (!failed_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("fake collective: the group failed earlier (", failed_.message(), ")"));
  }
  return absl::OkStatus();
}

absl::Status FakeCollective::AllReduceSum(at::Tensor& buffer) {
  absl::MutexLock lock(&mu_);
  const int64_t n = ++all_reduces_;
  if (absl::Status s = BrokenLocked(); !s.ok()) return s;
  if (n == fail_all_reduce_at_) {
    failed_ = all_reduce_error_;
    return all_reduce_error_;
  }
  if (n == hang_at_) {
    hanging_ = true;
    while (!aborted_) aborted_cv_.Wait(&mu_);
    hanging_ = false;
    return absl::AbortedError("fake collective: aborted while waiting for a peer");
  }
  if (world_size_ != 1) buffer.mul_(static_cast<double>(world_size_));
  if (n == poison_at_) buffer.view({-1})[0].fill_(std::numeric_limits<float>::quiet_NaN());
  return absl::OkStatus();
}

absl::Status FakeCollective::Broadcast(at::Tensor& buffer, int64_t root) {
  absl::MutexLock lock(&mu_);
  const int64_t n = ++broadcasts_;
  if (absl::Status s = BrokenLocked(); !s.ok()) return s;
  if (n == fail_broadcast_at_) {
    failed_ = broadcast_error_;
    return broadcast_error_;
  }
  return absl::OkStatus();
}

void FakeCollective::Abort() {
  absl::MutexLock lock(&mu_);
  aborted_ = true;
  aborted_cv_.SignalAll();
}

int64_t FakeCollective::all_reduces() const {
  absl::MutexLock lock(&mu_);
  return all_reduces_;
}

int64_t FakeCollective::broadcasts() const {
  absl::MutexLock lock(&mu_);
  return broadcasts_;
}

bool FakeCollective::aborted() const {
  absl::MutexLock lock(&mu_);
  return aborted_;
}

bool FakeCollective::hanging() const {
  absl::MutexLock lock(&mu_);
  return hanging_;
}

CollectiveFactory FakeCollective::Factory() {
  return [this](const CollectiveOptions& options,
                RendezvousClient*) -> absl::StatusOr<std::unique_ptr<Collective>> {
    {
      absl::MutexLock lock(&mu_);
      made_.push_back(options);
    }
    return std::unique_ptr<Collective>(std::make_unique<Handle>(this));
  };
}

std::vector<CollectiveOptions> FakeCollective::made() const {
  absl::MutexLock lock(&mu_);
  return made_;
}

}  // namespace llava::testing
