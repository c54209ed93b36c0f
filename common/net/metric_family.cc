#include "common/net/metric_family.h"

#include <prometheus/metric_family.h>

namespace llava {

prometheus::MetricFamily ScrapeFamily(const char* name, const char* help, bool counter) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = counter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge;
  return f;
}

void AddSample(prometheus::MetricFamily* family, const MetricLabels& labels, double value) {
  prometheus::ClientMetric m;
  for (const auto& [name, v] : labels) m.label.push_back({name, v});
  if (family->type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  family->metric.push_back(std::move(m));
}

}  // namespace llava
