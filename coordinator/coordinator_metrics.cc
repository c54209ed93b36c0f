#include "coordinator/coordinator_metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <vector>

#include "coordinator/job_scheduler.h"
#include "coordinator/worker_registry.h"

namespace llava {
namespace {

// Finished jobs stay in the scheduler for good; only this many of the newest are
// exported, so that series do not grow without bound.
constexpr size_t kFinishedJobsExported = 50;

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void AddGauge(prometheus::MetricFamily* f, std::vector<prometheus::ClientMetric::Label> labels, double v) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (f->type == prometheus::MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  f->metric.push_back(std::move(m));
}

class ClusterCollector : public prometheus::Collectable {
 public:
  ClusterCollector(const JobScheduler* scheduler, const WorkerRegistry* workers)
      : scheduler_(scheduler), workers_(workers) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    auto state = Family("llava_job_state", "1 for the job's current state", MetricType::Gauge);
    auto step = Family("llava_job_step", "training steps done", MetricType::Gauge);
    auto total = Family("llava_job_total_steps", "training steps planned", MetricType::Gauge);
    auto loss = Family("llava_job_loss", "mean answer-token loss of the last step", MetricType::Gauge);
    auto lr = Family("llava_job_learning_rate", "learning rate of the last step", MetricType::Gauge);
    auto speed = Family("llava_job_samples_per_second",
                        "training samples per second of the whole group, this attempt", MetricType::Gauge);
    auto restarts = Family("llava_job_restarts_total", "restarts from a checkpoint", MetricType::Counter);
    auto answers = Family("llava_job_eval_answers_done", "eval answers done", MetricType::Gauge);
    auto accuracy = Family("llava_job_eval_accuracy", "eval accuracy over every question (finished jobs)",
                           MetricType::Gauge);

    std::vector<v1::JobStatus> jobs = scheduler_->List();  // submission order
    size_t finished_left = kFinishedJobsExported;
    for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) {
      const v1::JobStatus& j = *it;
      const bool finished = IsFinished(j.state());
      if (finished && finished_left == 0) continue;
      if (finished) --finished_left;
      const prometheus::ClientMetric::Label id{"job_id", j.job_id()};
      AddGauge(&state, {id, {"state", v1::JobState_Name(j.state()).substr(10)}}, 1);
      AddGauge(&restarts, {id}, static_cast<double>(j.restarts()));
      if (j.kind() == v1::JOB_KIND_TRAIN) {
        AddGauge(&step, {id}, static_cast<double>(j.step()));
        AddGauge(&total, {id}, static_cast<double>(j.total_steps()));
        if (j.has_last_step()) {
          AddGauge(&loss, {id}, j.last_step().loss());
          AddGauge(&lr, {id}, j.last_step().lr());
          AddGauge(&speed, {id}, j.last_step().samples_per_s());
        }
      } else {
        AddGauge(&answers, {id}, static_cast<double>(j.eval_images_done()));
        if (j.state() == v1::JOB_STATE_SUCCEEDED) AddGauge(&accuracy, {id}, j.eval_accuracy());
      }
    }
    auto alive = Family("llava_workers_alive", "registered workers heard from in time", MetricType::Gauge);
    auto busy = Family("llava_workers_busy", "live workers running a task", MetricType::Gauge);
    int64_t n_alive = 0, n_busy = 0;
    for (const v1::WorkerStatus& w : workers_->List(Clock::now())) {
      n_alive += w.alive();
      n_busy += w.alive() && !w.running().job_id().empty();
    }
    AddGauge(&alive, {}, static_cast<double>(n_alive));
    AddGauge(&busy, {}, static_cast<double>(n_busy));
    return {state, step, total, loss, lr, speed, restarts, answers, accuracy, alive, busy};
  }

 private:
  static bool IsFinished(v1::JobState s) {
    return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
  }

  const JobScheduler* scheduler_;
  const WorkerRegistry* workers_;
};

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& registry, const JobScheduler* scheduler,
                                       const WorkerRegistry* workers)
    : rpc_(registry),
      checkpoint_bytes_(prometheus::BuildCounter()
                            .Name("llava_checkpoint_bytes_total")
                            .Help("checkpoint bytes moved, by direction (upload: from rank 0)")
                            .Register(registry)),
      checkpoint_seconds_(prometheus::BuildHistogram()
                              .Name("llava_checkpoint_seconds")
                              .Help("duration of a checkpoint transfer, storage included")
                              .Register(registry)),
      cluster_(std::make_shared<ClusterCollector>(scheduler, workers)) {}

void CoordinatorMetrics::RecordCheckpoint(const std::string& direction, int64_t bytes, double seconds) {
  checkpoint_bytes_.Add({{"direction", direction}}).Increment(static_cast<double>(bytes));
  static const prometheus::Histogram::BucketBoundaries kBuckets = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  checkpoint_seconds_.Add({{"direction", direction}}, kBuckets).Observe(seconds);
}

}  // namespace llava
