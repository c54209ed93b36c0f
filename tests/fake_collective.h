// A collective group in one thread for unit tests, with errors on cue (as c10d's
// FakeProcessGroup, with an error switch): it sums as a group of `world_size` ranks that
// all hold this rank's buffer would (world size 1: unchanged), broadcasts as the root
// (unchanged), and keeps the interface's contract on failure: after an error the group is
// unusable (every later call fails), and Abort() makes a pending and every later call fail
// promptly. The test keeps the group; Factory() hands tasks a handle to it (a task owns
// and destroys its group), so that counts and aborts stay readable after the task ends.
// Thread-safe: one mutex; Abort() may come from any thread, as the interface allows.
#pragma once

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "worker/collective.h"
#include "worker/worker_tasks.h"

namespace llava::testing {

class FakeCollective : public Collective {
 public:
  explicit FakeCollective(int64_t world_size = 1) : world_size_(world_size) {}

  // The `nth` call (1-based, counted over the group's life) fails with `error`.
  void FailAllReduce(int64_t nth, absl::Status error);
  void FailBroadcast(int64_t nth, absl::Status error);
  // The `nth` all-reduce waits (a peer that hangs) until Abort(), then fails ABORTED.
  void HangAllReduce(int64_t nth);
  // The `nth` all-reduce's sum holds a NaN in its first element (a peer whose gradients
  // were not finite).
  void PoisonAllReduce(int64_t nth);

  absl::Status AllReduceSum(at::Tensor& buffer) override;
  absl::Status Broadcast(at::Tensor& buffer, int64_t root) override;
  void Abort() override;

  int64_t all_reduces() const;  // calls made, failed ones included
  int64_t broadcasts() const;
  bool aborted() const;
  bool hanging() const;  // a call waits in HangAllReduce's hang now
  // Makes handles to this group (not owned by them) and records the options asked for.
  CollectiveFactory Factory();
  std::vector<CollectiveOptions> made() const;

 private:
  // The error a call must return now (after counting it), if any.
  absl::Status BrokenLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t world_size_;
  mutable absl::Mutex mu_;
  absl::CondVar aborted_cv_;
  int64_t all_reduces_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t broadcasts_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t fail_all_reduce_at_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status all_reduce_error_ ABSL_GUARDED_BY(mu_);
  int64_t fail_broadcast_at_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status broadcast_error_ ABSL_GUARDED_BY(mu_);
  int64_t hang_at_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t poison_at_ ABSL_GUARDED_BY(mu_) = 0;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  bool hanging_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failed_ ABSL_GUARDED_BY(mu_);  // the first error: the group is unusable after it
  std::vector<CollectiveOptions> made_ ABSL_GUARDED_BY(mu_);
};

}  // namespace llava::testing
