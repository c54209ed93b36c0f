#include "common/log.h"

#include <glog/logging.h>

#include <atomic>

namespace llava::log {

Line::Line(const char* file, int line, Severity severity)
    : file_(file), line_(line), severity_(severity) {}

Line::~Line() noexcept(false) {
  // google::LogMessage flushes in its destructor; FATAL aborts after writing.
  google::LogMessage(file_, line_, static_cast<google::LogSeverity>(severity_)).stream()
      << stream_.str();
}

void InitLogging(const char* argv0) {
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  // A CLI's logs belong on stderr; glog's default is files under /tmp.
  if (getenv("GLOG_logtostderr") == nullptr && getenv("GLOG_log_dir") == nullptr) {
    FLAGS_logtostderr = true;
  }
  google::InitGoogleLogging(argv0);
}

}  // namespace llava::log
