#include "launch/kineto_trace.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>

#include "absl/strings/str_cat.h"

namespace llava {
namespace {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

ProfilerConfig Config() { return ProfilerConfig(ProfilerState::KINETO); }

}  // namespace

KinetoTrace::~KinetoTrace() {
  if (!running_) return;
  try {
    prof::disableProfiler();
  } catch (const c10::Error&) {
    // Nothing to report from a destructor: the trace was not asked for any more.
  }
}

absl::Status KinetoTrace::Start(const at::Device& device) {
  if (running_) return absl::FailedPreconditionError("a profiler trace is already running");
  std::set<ActivityType> activities{ActivityType::CPU};
  if (device.is_cuda()) activities.insert(ActivityType::CUDA);
  try {
    prof::prepareProfiler(Config(), activities);
    prof::enableProfiler(Config(), activities);
  } catch (const c10::Error& e) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start libtorch's profiler: ", e.what_without_backtrace()));
  }
  running_ = true;
  return absl::OkStatus();
}

absl::Status KinetoTrace::Stop(const std::string& path) {
  if (!running_) return absl::FailedPreconditionError("no profiler trace is running");
  running_ = false;
  try {
    std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();
    result->save(path);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("cannot write the profiler trace ", path, ": ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

}  // namespace llava
