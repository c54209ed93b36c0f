// What the metrics code shares: forward declarations of the prometheus-cpp types its
// headers name, and metric families built by hand for collectors that read their values
// at scrape time (jobs from the scheduler, GPU memory from the allocator). Stateless.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace prometheus {
class Collectable;
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
struct MetricFamily;
}  // namespace prometheus

namespace llava {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A family of gauges, or of counters when `counter` (values set whole, not incremented).
prometheus::MetricFamily ScrapeFamily(const char* name, const char* help, bool counter = false);
// One sample of the family's type.
void AddSample(prometheus::MetricFamily* family, const MetricLabels& labels, double value);

}  // namespace llava
