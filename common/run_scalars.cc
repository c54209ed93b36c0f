#include "common/run_scalars.h"

#include "absl/strings/str_cat.h"

namespace llava {

std::vector<TbScalar> TrainScalars(const TrainStepScalars& s) {
  std::vector<TbScalar> out = {{"train/loss", s.loss},
                               {"train/learning_rate", s.lr},
                               {"train/samples_per_second", s.samples_per_s},
                               {"train/grad_norm", s.grad_norm}};
  if (s.loss_scale > 0) out.push_back({"train/loss_scale", s.loss_scale});
  return out;
}

std::vector<TbScalar> EvalScalars(const EvalReport& report) {
  std::vector<TbScalar> out = {{"eval/accuracy", report.Accuracy()}};
  for (size_t q = 0; q < report.questions().size(); ++q) {
    out.push_back({absl::StrCat("eval/question/", report.questions()[q]),
                   report.QuestionAccuracy(static_cast<int64_t>(q))});
  }
  for (int64_t c = 0; c < report.num_classes(); ++c) {
    out.push_back({absl::StrCat("eval/class/", c), report.ClassAccuracy(c)});
  }
  return out;
}

}  // namespace llava
