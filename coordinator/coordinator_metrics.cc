#include "coordinator/coordinator_metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <vector>

#include "common/job_spec.h"
#include "coordinator/job_scheduler.h"
#include "coordinator/worker_registry.h"

namespace llava {
namespace {

// Finished jobs stay in the scheduler for good; only this many of the newest are
// exported, so that series do not grow without bound.
constexpr size_t kFinishedJobsExported = 50;

class ClusterCollector : public prometheus::Collectable {
 public:
  ClusterCollector(const JobScheduler* scheduler, const WorkerRegistry* workers)
      : scheduler_(scheduler), workers_(workers) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    auto state = ScrapeFamily("llava_job_state", "1 for the job's current state");
    auto step = ScrapeFamily("llava_job_step", "training steps done");
    auto total = ScrapeFamily("llava_job_total_steps", "training steps planned");
    auto loss = ScrapeFamily("llava_job_loss", "mean answer-token loss of the last step");
    auto lr = ScrapeFamily("llava_job_learning_rate", "learning rate of the last step");
    auto speed = ScrapeFamily("llava_job_samples_per_second",
                              "training samples per second of the whole group, this attempt");
    auto restarts =
        ScrapeFamily("llava_job_restarts_total", "restarts from a checkpoint", /*counter=*/true);
    auto answers = ScrapeFamily("llava_job_eval_answers_done", "eval answers done");
    auto accuracy = ScrapeFamily("llava_job_eval_accuracy",
                                 "eval accuracy over every question (finished jobs)");

    std::vector<v1::JobStatus> jobs = scheduler_->List();  // submission order
    size_t finished_left = kFinishedJobsExported;
    for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) {
      const v1::JobStatus& j = *it;
      const bool finished = IsTerminal(j.state());
      if (finished && finished_left == 0) continue;
      if (finished) --finished_left;
      const std::pair<std::string, std::string> id{"job_id", j.job_id()};
      AddSample(&state, {id, {"state", v1::JobState_Name(j.state()).substr(10)}}, 1);
      AddSample(&restarts, {id}, static_cast<double>(j.restarts()));
      if (j.kind() == v1::JOB_KIND_TRAIN) {
        AddSample(&step, {id}, static_cast<double>(j.step()));
        AddSample(&total, {id}, static_cast<double>(j.total_steps()));
        if (j.has_last_step()) {
          AddSample(&loss, {id}, j.last_step().loss());
          AddSample(&lr, {id}, j.last_step().lr());
          AddSample(&speed, {id}, j.last_step().samples_per_s());
        }
      } else {
        AddSample(&answers, {id}, static_cast<double>(j.eval_images_done()));
        if (j.state() == v1::JOB_STATE_SUCCEEDED) AddSample(&accuracy, {id}, j.eval_accuracy());
      }
    }
    auto alive = ScrapeFamily("llava_workers_alive", "registered workers heard from in time");
    auto busy = ScrapeFamily("llava_workers_busy", "live workers running a task");
    int64_t n_alive = 0, n_busy = 0;
    for (const v1::WorkerStatus& w : workers_->List(Clock::now())) {
      n_alive += w.alive();
      n_busy += w.alive() && !w.running().job_id().empty();
    }
    AddSample(&alive, {}, static_cast<double>(n_alive));
    AddSample(&busy, {}, static_cast<double>(n_busy));
    return {state, step, total, loss, lr, speed, restarts, answers, accuracy, alive, busy};
  }

 private:
  const JobScheduler* scheduler_;
  const WorkerRegistry* workers_;
};

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& registry,
                                       const JobScheduler* scheduler, const WorkerRegistry* workers)
    : rpc_(registry),
      checkpoint_bytes_(prometheus::BuildCounter()
                            .Name("llava_checkpoint_bytes_total")
                            .Help("checkpoint bytes moved, by direction (upload: from rank 0) and "
                                  "content (full, or projector_only: without the optimizer state)")
                            .Register(registry)),
      checkpoint_transfers_(prometheus::BuildCounter()
                                .Name("llava_checkpoint_transfers_total")
                                .Help("checkpoint transfers completed, by direction and content "
                                      "(an eval job downloads one projector_only copy per attempt)")
                                .Register(registry)),
      checkpoint_seconds_(prometheus::BuildHistogram()
                              .Name("llava_checkpoint_seconds")
                              .Help("duration of a checkpoint transfer, storage included")
                              .Register(registry)),
      cluster_(std::make_shared<ClusterCollector>(scheduler, workers)) {}

void CoordinatorMetrics::RecordCheckpoint(const std::string& direction, const std::string& content,
                                          int64_t bytes, double seconds) {
  checkpoint_bytes_.Add({{"direction", direction}, {"content", content}})
      .Increment(static_cast<double>(bytes));
  checkpoint_transfers_.Add({{"direction", direction}, {"content", content}}).Increment();
  static const prometheus::Histogram::BucketBoundaries kBuckets = {0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                                                   2.5,  5,    10,  30,   60};
  checkpoint_seconds_.Add({{"direction", direction}}, kBuckets).Observe(seconds);
}

}  // namespace llava
