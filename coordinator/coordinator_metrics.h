// The coordinator's Prometheus metrics. Jobs (step, loss, learning rate, samples/s, eval
// accuracy, restarts, state) and workers (alive, busy) are read from the scheduler and
// the registry when Prometheus scrapes, so they never drift from what the RPCs report;
// checkpoint transfers and RPCs are counted as they happen. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/net/metric_family.h"
#include "common/net/rpc_metrics.h"

namespace llava {

class JobScheduler;
class WorkerRegistry;

class CoordinatorMetrics {
 public:
  // Metric families go into `registry` (served or not); the scheduler and the worker
  // registry must outlive this object and the collector.
  CoordinatorMetrics(prometheus::Registry& registry, const JobScheduler* scheduler,
                     const WorkerRegistry* workers);

  RpcMetrics& rpc() { return rpc_; }
  // `direction`: "upload" or "download"; `content`: "full" or "projector_only" (the
  // checkpoint without its optimizer state, what eval jobs fetch).
  void RecordCheckpoint(const std::string& direction, const std::string& content, int64_t bytes,
                        double seconds);
  // Jobs and workers, read at scrape time.
  const std::shared_ptr<prometheus::Collectable>& cluster() const { return cluster_; }

 private:
  RpcMetrics rpc_;
  prometheus::Family<prometheus::Counter>& checkpoint_bytes_;
  prometheus::Family<prometheus::Counter>& checkpoint_transfers_;
  prometheus::Family<prometheus::Histogram>& checkpoint_seconds_;
  std::shared_ptr<prometheus::Collectable> cluster_;
};

}  // namespace llava
