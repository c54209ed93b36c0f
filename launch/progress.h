// Progress display for training and eval loops: one line redrawn in place on a terminal,
// periodic LM_LOG(INFO) lines elsewhere (pipes, CI, log files), and a summary at the end.
// Not thread-safe: the loop doing the work calls Update and Finish.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace llava {

struct ProgressOptions {
  enum class Mode { kAuto, kTerminal, kLog };
  Mode mode = Mode::kAuto;        // kAuto: kTerminal when stderr is a terminal, else kLog
  int64_t initial = 0;            // items already done at the start (a resumed run): not in it/s
  double redraw_seconds = 0.1;    // terminal: redraw at most this often
  int64_t log_every_steps = 0;    // log: a line every this many items (0: by time only)
  double log_every_seconds = 30;  // log: and one at least this often (0: by steps only)
  int bar_width = 30;
  // Seconds on a monotonic clock; default std::chrono::steady_clock. Tests inject a fake.
  std::function<double()> clock;
  // Where terminal text goes (default stderr, flushed) and where log lines go (default
  // LM_LOG(INFO)).
  std::function<void(const std::string&)> terminal;
  std::function<void(const std::string&)> log;
};

class Progress {
 public:
  // total <= 0: unknown, shown without a bar, percentage or ETA.
  Progress(std::string label, int64_t total, ProgressOptions options = {});
  ~Progress();  // Finish()es if the caller did not
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `done` items so far; `values` (loss, lr, ...) are shown by name, in name order.
  void Update(int64_t done, const std::map<std::string, double>& values = {});
  // Ends the terminal line and logs a summary; later calls do nothing.
  void Finish();

 private:
  std::string Status(bool terminal, double now) const;  // the text after the label
  void Draw(double now);

  std::string label_;
  int64_t total_;
  ProgressOptions options_;
  bool terminal_;
  double start_;
  double last_draw_ = -1, last_log_;
  int64_t done_, last_logged_done_;
  std::map<std::string, double> values_;
  size_t last_width_ = 0;
  bool finished_ = false;
};

// "0:25", "12:03", "1:02:03"; "?" for a negative or non-finite time.
std::string FormatDuration(double seconds);
// Values for progress lines: 4 significant digits, or 1.0e-03 style when tiny or huge.
std::string FormatProgressValue(double v);

}  // namespace llava
