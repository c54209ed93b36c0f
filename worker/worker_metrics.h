// A worker's Prometheus metrics: the time of every training step it runs and of its
// gradient all-reduce, tasks by kind and outcome, eval answers, and the device memory
// libtorch's caching allocator holds (read at scrape time). Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "common/net/metric_family.h"
#include "protos/llava.pb.h"

namespace llava {

class WorkerMetrics {
 public:
  // `device`: "cpu", "cuda:0" (memory is exported for CUDA devices only).
  WorkerMetrics(prometheus::Registry& registry, const std::string& device);

  void RecordStep(const v1::StepMetrics& m);
  // `kind`: "train" or "eval"; `outcome`: "ok", "failed", "aborted".
  void RecordTask(const std::string& kind, const std::string& outcome);
  void AddEvalAnswers(int64_t n);
  const std::shared_ptr<prometheus::Collectable>& device_memory() const { return memory_; }

 private:
  prometheus::Histogram& step_seconds_;
  prometheus::Histogram& allreduce_seconds_;
  prometheus::Gauge& last_step_;
  prometheus::Family<prometheus::Counter>& tasks_;
  prometheus::Counter& eval_answers_;
  std::shared_ptr<prometheus::Collectable> memory_;
};

}  // namespace llava
