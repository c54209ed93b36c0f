// Logging for the whole project: LM_LOG(INFO|WARNING|ERROR|FATAL) << ... and LM_CHECK.
// Owns the logging policy. glog is the backend, but this header never includes glog:
// torch's c10/util/Logging.h defines its own LOG/CHECK macros (without glog in PyTorch
// wheels), so our macros have their own names and forward to glog from log.cc.
// Thread-safe: each statement builds its line locally and glog writes it atomically.
#pragma once

#include <sstream>
#include <string>

namespace llava::log {

enum Severity { INFO = 0, WARNING = 1, ERROR = 2, FATAL = 3 };

// One log line; emitted (and for FATAL, the process aborted) when destroyed.
class Line {
 public:
  Line(const char* file, int line, Severity severity);
  ~Line() noexcept(false);
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  const char* file_;
  int line_;
  Severity severity_;
  std::ostringstream stream_;
};

// Turns `LM_CHECK(x) << ...` into a no-op expression when x holds.
struct Voidify {
  void operator&(std::ostream&) {}
};

// Sets glog up for a command-line program: logs to stderr (not /tmp files) at INFO and
// above, unless GLOG_* flags or environment variables say otherwise. Idempotent.
void InitLogging(const char* argv0);

}  // namespace llava::log

#define LM_LOG(severity) ::llava::log::Line(__FILE__, __LINE__, ::llava::log::severity).stream()

// Invariant checks (programming errors, CUDA/NCCL return codes): log with file:line and
// abort. Never for validating user input: that returns absl::Status.
#define LM_CHECK(cond) \
  (cond) ? (void)0 : ::llava::log::Voidify() & LM_LOG(FATAL) << "Check failed: " #cond " "

#define LM_CHECK_OP(a, op, b) LM_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "
#define LM_CHECK_EQ(a, b) LM_CHECK_OP(a, ==, b)
#define LM_CHECK_NE(a, b) LM_CHECK_OP(a, !=, b)
#define LM_CHECK_LT(a, b) LM_CHECK_OP(a, <, b)
#define LM_CHECK_LE(a, b) LM_CHECK_OP(a, <=, b)
#define LM_CHECK_GT(a, b) LM_CHECK_OP(a, >, b)
#define LM_CHECK_GE(a, b) LM_CHECK_OP(a, >=, b)
