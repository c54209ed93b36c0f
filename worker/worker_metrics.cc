#include "worker/worker_metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <c10/core/Device.h>

#ifdef LLAVA_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace llava {
namespace {

const prometheus::Histogram::BucketBoundaries& StepBuckets() {
  static const prometheus::Histogram::BucketBoundaries b = {
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return b;
}

// Bytes held by tensors and reserved by the allocator, now and at peak (since start).
class DeviceMemory : public prometheus::Collectable {
 public:
  explicit DeviceMemory(const std::string& device) : device_(device) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
#ifdef LLAVA_HAVE_CUDA
    if (device_.is_cuda()) {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
          device_.has_index() ? device_.index() : 0);
      auto f = ScrapeFamily(
          "llava_worker_gpu_memory_bytes",
          "GPU memory of libtorch's caching allocator (kind: allocated or reserved; now or peak)");
      auto add = [&](const char* kind, const char* when, int64_t v) {
        AddSample(&f, {{"device", device_.str()}, {"kind", kind}, {"when", when}},
                  static_cast<double>(v));
      };
      add("allocated", "now", stats.allocated_bytes[0].current);  // [0]: all pools
      add("allocated", "peak", stats.allocated_bytes[0].peak);
      add("reserved", "now", stats.reserved_bytes[0].current);
      add("reserved", "peak", stats.reserved_bytes[0].peak);
      return {f};
    }
#endif
    return {};
  }

 private:
  const c10::Device device_;
};

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& registry, const std::string& device)
    : step_seconds_(prometheus::BuildHistogram()
                        .Name("llava_worker_step_seconds")
                        .Help("wall time of one training step on this worker (all-reduce included)")
                        .Register(registry)
                        .Add({}, StepBuckets())),
      allreduce_seconds_(prometheus::BuildHistogram()
                             .Name("llava_worker_allreduce_seconds")
                             .Help("time of the gradient all-reduce in one training step")
                             .Register(registry)
                             .Add({}, StepBuckets())),
      last_step_(prometheus::BuildGauge()
                     .Name("llava_worker_step")
                     .Help("the last training step this worker finished")
                     .Register(registry)
                     .Add({})),
      tasks_(prometheus::BuildCounter()
                 .Name("llava_worker_tasks_total")
                 .Help("tasks run, by kind and outcome")
                 .Register(registry)),
      eval_answers_(prometheus::BuildCounter()
                        .Name("llava_worker_eval_answers_total")
                        .Help("eval answers generated")
                        .Register(registry)
                        .Add({})),
      memory_(std::make_shared<DeviceMemory>(device)) {}

void WorkerMetrics::RecordStep(const v1::StepMetrics& m) {
  step_seconds_.Observe(m.step_ms() / 1000.0);
  allreduce_seconds_.Observe(m.allreduce_ms() / 1000.0);
  last_step_.Set(static_cast<double>(m.step()));
}

void WorkerMetrics::RecordTask(const std::string& kind, const std::string& outcome) {
  tasks_.Add({{"kind", kind}, {"outcome", outcome}}).Increment();
}

void WorkerMetrics::AddEvalAnswers(int64_t n) {
  if (n > 0) eval_answers_.Increment(static_cast<double>(n));
}

}  // namespace llava
