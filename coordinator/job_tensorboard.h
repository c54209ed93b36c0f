// TensorBoard event files of the coordinator's jobs, under <root>/<training job id>/: the
// train/* tags of every step rank 0 reports (common/run_scalars.h), a restart marker where
// an attempt resumed from a checkpoint (TensorBoard then shows the redone steps in place
// of the lost ones), and the eval/* tags of every eval job at the step of the checkpoint
// it evaluated, in the directory of the job that checkpoint came from.
//
// Why the coordinator writes them and not rank 0: the step metrics already come to it in
// heartbeats, it sees every attempt of a job (rank 0 may be another worker, on another
// node, after a restart), it alone has the merged eval report, and its state directory
// is on a volume that outlives pods, while workers run with read-only root filesystems.
//
// Thread-safe (one mutex; the scheduler calls in while holding its own, and this never
// calls out). A write that fails is logged once per job and never fails the job: the
// curves are a view, the job record and checkpoints are the truth.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/eval_report.h"
#include "common/tensorboard_events.h"
#include "protos/llava.pb.h"

namespace llava {

class JobTensorBoard {
 public:
  // At most `max_open` files are open at once; the least recently written one is closed
  // first (a later write to its job opens a new file in the same directory).
  explicit JobTensorBoard(std::string root, size_t max_open = 64);

  const std::string& root() const { return root_; }
  // Steps the scheduler accepted from rank 0 of `attempt`, which resumed from the
  // checkpoint of `resumed_from_step` (0: from scratch).
  void OnSteps(const std::string& job_id, int64_t attempt, int64_t resumed_from_step,
               const std::vector<v1::StepMetrics>& steps);
  // An eval job succeeded on `checkpoint_id` ("train-000001/step-000050").
  void OnEval(const std::string& checkpoint_id, const EvalReport& report);

 private:
  struct Run {
    std::unique_ptr<TbEventWriter> writer;
    int64_t attempt = 0;  // the last attempt written; 0: none yet by this process
    bool failed = false;  // a write failed (logged); no more tries
  };
  // Under mu_: the open run of `job_id`, opened (and made the most recent) as needed;
  // null once its writes failed.
  Run* Open(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Write(const std::string& job_id, Run* run, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string root_;
  const size_t max_open_;
  absl::Mutex mu_;
  std::map<std::string, Run> runs_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> recent_ ABSL_GUARDED_BY(mu_);  // open runs, most recently used first
};

}  // namespace llava
