// libFuzzer target: job specs as a client sends them (SubmitJobRequest, TrainSpec or
// EvalSpec, in binary protobuf or in protobuf's JSON as `submit --job_json` reads it),
// resolved as the coordinator does at submission, and for a resolved training spec the
// data plan that JobScheduler::StartTrain builds for its group.
// First byte: bit 0 JSON (1) or binary (0); (byte >> 1) % 3 the message type.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/data_plan.h"
#include "common/job_spec.h"
#include "protos/llava.pb.h"

namespace {

// The training digits a worker holds (MNIST's train split less the 1,000 held out).
constexpr int64_t kWorkerTrainImages = 9000;

bool Parse(bool json, const std::string& bytes, google::protobuf::Message* message) {
  if (!json) return message->ParseFromString(bytes);
  google::protobuf::util::JsonParseOptions options;  // unknown fields refused, as submit does
  return google::protobuf::util::JsonStringToMessage(bytes, message, options).ok();
}

// What StartTrain does with a resolved spec and a group of `world` workers.
void PlanTraining(const llava::v1::TrainSpec& spec) {
  (void)llava::ProjectorFromSpec(spec);
  (void)llava::OptimizerFromSpec(spec);
  (void)llava::ScheduleFromSpec(spec);
  (void)llava::PromptFromSpec(spec);
  const int64_t world = spec.world_size();
  const int64_t digits = spec.train_digits() < 0
                             ? kWorkerTrainImages
                             : std::min(spec.train_digits(), kWorkerTrainImages);
  auto global = llava::GlobalBatch(spec, world);
  if (!global.ok()) return;  // StartTrain fails the job with this reason
  llava::DataPlanConfig config;
  config.num_samples = digits;
  config.global_batch = *global;
  config.epochs = spec.epochs();
  config.max_steps = spec.max_steps();
  config.seed = spec.seed();
  config.num_questions = std::max(1, spec.questions_size());
  config.num_answer_templates = std::max(1, spec.answer_templates_size());
  if (!config.Validate().ok()) return;  // likewise
  const llava::DataPlan plan(config);
  if (plan.total_steps() <= 0) return;
  for (int64_t step : {int64_t{0}, plan.total_steps() - 1}) {
    const auto samples = plan.StepSamples(step);
    (void)llava::DataPlan::RankShare(samples, 0, world);
    (void)llava::DataPlan::RankShare(samples, world - 1, world);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // every invalid UTF-8 string would log
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool json = data[0] & 1;
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  switch ((data[0] >> 1) % 3) {
    case 0: {
      llava::v1::SubmitJobRequest request;
      if (!Parse(json, bytes, &request)) return 0;
      if (request.has_train()) {
        if (llava::ResolveTrainSpec(request.mutable_train()).ok()) PlanTraining(request.train());
      } else if (request.has_eval()) {
        (void)llava::ResolveEvalSpec(request.mutable_eval());
      }
      break;
    }
    case 1: {
      llava::v1::TrainSpec spec;
      if (Parse(json, bytes, &spec) && llava::ResolveTrainSpec(&spec).ok()) PlanTraining(spec);
      break;
    }
    case 2: {
      llava::v1::EvalSpec spec;
      if (Parse(json, bytes, &spec) && llava::ResolveEvalSpec(&spec).ok()) {
        (void)llava::PromptFromSpec(spec, 1);
      }
      break;
    }
  }
  return 0;
}
