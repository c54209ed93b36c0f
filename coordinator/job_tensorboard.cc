#include "coordinator/job_tensorboard.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/run_scalars.h"

namespace llava {

JobTensorBoard::JobTensorBoard(std::string root, size_t max_open)
    : root_(std::move(root)), max_open_(std::max<size_t>(1, max_open)) {}

JobTensorBoard::Run* JobTensorBoard::Open(const std::string& job_id) {
  Run& run = runs_[job_id];
  if (run.failed) return nullptr;
  recent_.remove(job_id);
  recent_.push_front(job_id);
  if (run.writer == nullptr) {
    auto writer = TbEventWriter::Create(absl::StrCat(root_, "/", job_id));
    if (!writer.ok()) {
      LM_LOG(WARNING) << "job " << job_id << ": no TensorBoard events: " << writer.status();
      run.failed = true;
      return nullptr;
    }
    run.writer = std::move(*writer);
  }
  while (recent_.size() > max_open_) {
    runs_[recent_.back()].writer.reset();
    recent_.pop_back();
  }
  return &run;
}

void JobTensorBoard::Write(const std::string& job_id, Run* run, const absl::Status& status) {
  if (status.ok() || run->failed) return;
  LM_LOG(WARNING) << "job " << job_id << ": TensorBoard events stop: " << status;
  run->failed = true;
  run->writer.reset();
  recent_.remove(job_id);
}

void JobTensorBoard::OnSteps(const std::string& job_id, int64_t attempt, int64_t resumed_from_step,
                             const std::vector<v1::StepMetrics>& steps) {
  if (steps.empty()) return;
  absl::MutexLock lock(&mu_);
  Run* run = Open(job_id);
  if (run == nullptr) return;
  const double now = WallTimeNow();
  // The first steps of an attempt that resumed: earlier files (an earlier attempt, or an
  // earlier coordinator process) may hold steps after the checkpoint, now redone.
  if (run->attempt != attempt && resumed_from_step > 0) {
    Write(job_id, run,
          run->writer->WriteRestart(resumed_from_step + 1, now,
                                    absl::StrCat(job_id, "/step-", resumed_from_step)));
  }
  run->attempt = attempt;
  for (const v1::StepMetrics& m : steps) {
    if (run->failed) return;
    TrainStepScalars s;
    s.loss = m.loss();
    s.lr = m.lr();
    s.samples_per_s = m.samples_per_s();
    s.grad_norm = m.grad_norm();
    s.loss_scale = m.loss_scale();
    Write(job_id, run, run->writer->WriteScalars(m.step(), now, TrainScalars(s)));
  }
}

void JobTensorBoard::OnEval(const std::string& checkpoint_id, const EvalReport& report) {
  const size_t slash = checkpoint_id.rfind("/step-");
  int64_t step = 0;
  if (slash == std::string::npos || slash == 0 ||
      !absl::SimpleAtoi(checkpoint_id.substr(slash + 6), &step)) {
    LM_LOG(WARNING) << "eval of '" << checkpoint_id
                    << "': not a checkpoint id, no TensorBoard events";
    return;
  }
  const std::string job_id = checkpoint_id.substr(0, slash);
  absl::MutexLock lock(&mu_);
  Run* run = Open(job_id);
  if (run == nullptr) return;
  Write(job_id, run, run->writer->WriteScalars(step, WallTimeNow(), EvalScalars(report)));
}

}  // namespace llava
