// The TensorBoard tags of a training run, the same whoever writes them (`train` in its
// process, the coordinator for a job, and so `launch`): one place names them, so that
// every run's charts line up in one TensorBoard.
//
//   train/loss, train/learning_rate, train/samples_per_second, train/grad_norm,
//   train/loss_scale (float16 only), at each optimizer step (1-based: steps done);
//   eval/accuracy, eval/question/<question>, eval/class/<digit>, at the step of the
//   checkpoint evaluated.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "common/eval_report.h"
#include "common/tensorboard_events.h"

namespace llava {

struct TrainStepScalars {
  double loss = 0;
  double lr = 0;
  double samples_per_s = 0;
  double grad_norm = 0;   // L2 norm of the projector's gradient, the whole step's
  double loss_scale = 0;  // 0: the loss is not scaled, and no loss_scale tag is written
};

std::vector<TbScalar> TrainScalars(const TrainStepScalars& step);
std::vector<TbScalar> EvalScalars(const EvalReport& report);

}  // namespace llava
