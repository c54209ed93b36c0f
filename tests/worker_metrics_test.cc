// The worker's metrics as Prometheus renders them: step and all-reduce histograms fed
// from StepMetrics, tasks by kind and outcome, eval answers, and device memory only for
// CUDA devices.
#include "worker/worker_metrics.h"

#include <gtest/gtest.h>
#include <prometheus/collectable.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace llava {
namespace {

std::string Render(const prometheus::Collectable& c) {
  return prometheus::TextSerializer().Serialize(c.Collect());
}

TEST(WorkerMetricsTest, StepsTasksAndAnswersAreCounted) {
  prometheus::Registry registry;
  WorkerMetrics metrics(registry, "cpu");
  v1::StepMetrics step;
  step.set_step(7);
  step.set_step_ms(120);
  step.set_allreduce_ms(3);
  metrics.RecordStep(step);
  step.set_step(8);
  step.set_step_ms(80);
  step.set_allreduce_ms(1);
  metrics.RecordStep(step);
  metrics.RecordTask("train", "ok");
  metrics.RecordTask("eval", "aborted");
  metrics.RecordTask("eval", "aborted");
  metrics.AddEvalAnswers(30);
  metrics.AddEvalAnswers(12);
  metrics.AddEvalAnswers(0);

  const std::string text = Render(registry);
  EXPECT_NE(text.find("llava_worker_step_seconds_count 2"), std::string::npos) << text;
  EXPECT_NE(text.find("llava_worker_step_seconds_sum 0.2"), std::string::npos) << text;
  EXPECT_NE(text.find("llava_worker_step_seconds_bucket{le=\"0.1\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("llava_worker_allreduce_seconds_sum 0.004"), std::string::npos) << text;
  EXPECT_NE(text.find("llava_worker_step 8"), std::string::npos) << text;
  EXPECT_NE(text.find("llava_worker_tasks_total{kind=\"train\",outcome=\"ok\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("llava_worker_tasks_total{kind=\"eval\",outcome=\"aborted\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("llava_worker_eval_answers_total 42"), std::string::npos) << text;
  // A CPU worker exports no GPU memory.
  EXPECT_EQ(Render(*metrics.device_memory()), "");
}

}  // namespace
}  // namespace llava
