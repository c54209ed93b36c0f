// One profiled span of a command (bench's --profile_dir): the operators and, on CUDA, the
// kernels that ran between Start and Stop, written as a Chrome trace (libtorch's Kineto
// profiler, which chrome://tracing, Perfetto and bench/profile_summary.py read).
// Not thread-safe: libtorch's profiler is one per process, so one trace at a time.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "absl/status/status.h"

namespace llava {

class KinetoTrace {
 public:
  KinetoTrace() = default;
  KinetoTrace(const KinetoTrace&) = delete;
  KinetoTrace& operator=(const KinetoTrace&) = delete;
  // Stops an unfinished trace without writing it.
  ~KinetoTrace();

  // Starts recording what runs on the CPU and, for a CUDA device, on the GPU. Errors: a
  // libtorch without Kineto, a trace already running (FailedPrecondition).
  absl::Status Start(const at::Device& device);

  // Stops recording and writes the trace to `path`; the caller synchronizes the device
  // first, so that the last kernels are in it.
  absl::Status Stop(const std::string& path);

 private:
  bool running_ = false;
};

}  // namespace llava
