#include "launch/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"

namespace llava {
namespace {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void WriteStderr(const std::string& text) {
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
}

void LogInfo(const std::string& line) { LM_LOG(INFO) << line; }

std::string Bar(double fraction, int width) {
  const int filled = std::clamp(static_cast<int>(fraction * width), 0, width);
  if (filled == width) return absl::StrCat("[", std::string(width, '='), "]");
  return absl::StrCat("[", std::string(filled, '='), ">", std::string(width - filled - 1, ' '),
                      "]");
}

std::string Rate(double per_second) {
  if (per_second > 0 && per_second < 1) return absl::StrFormat("%.1f s/it", 1 / per_second);
  return absl::StrFormat("%.1f it/s", per_second);
}

}  // namespace

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string FormatProgressValue(double v) {
  const double a = std::fabs(v);
  if (v == 0 || !std::isfinite(v) || (a >= 1e-2 && a < 1e5)) return absl::StrFormat("%.4g", v);
  return absl::StrFormat("%.1e", v);
}

Progress::Progress(std::string label, int64_t total, ProgressOptions options)
    : label_(std::move(label)), total_(total), options_(std::move(options)) {
  if (!options_.clock) options_.clock = SteadySeconds;
  if (!options_.terminal) options_.terminal = WriteStderr;
  if (!options_.log) options_.log = LogInfo;
  terminal_ = options_.mode == ProgressOptions::Mode::kTerminal ||
              (options_.mode == ProgressOptions::Mode::kAuto && isatty(STDERR_FILENO) == 1);
  start_ = last_log_ = options_.clock();
  done_ = last_logged_done_ = options_.initial;
}

Progress::~Progress() { Finish(); }

std::string Progress::Status(bool terminal, double now) const {
  const double elapsed = now - start_;
  const double rate = elapsed > 0 ? static_cast<double>(done_ - options_.initial) / elapsed : 0;
  std::string out;
  if (total_ > 0) {
    const double fraction = static_cast<double>(done_) / static_cast<double>(total_);
    const int percent = static_cast<int>(std::floor(100 * std::clamp(fraction, 0.0, 1.0)));
    out = terminal ? absl::StrFormat("%s %d/%d %d%%", Bar(fraction, options_.bar_width), done_,
                                     total_, percent)
                   : absl::StrFormat("%d/%d (%d%%)", done_, total_, percent);
  } else {
    out = absl::StrCat(done_, " it");
  }
  for (const auto& [name, value] : values_) {
    absl::StrAppend(&out, " ", name, " ", FormatProgressValue(value));
  }
  absl::StrAppend(&out, " ", Rate(rate));
  if (total_ > 0 && done_ < total_) {
    absl::StrAppend(&out, " ETA ",
                    rate > 0 ? FormatDuration(static_cast<double>(total_ - done_) / rate) : "?");
  } else {
    absl::StrAppend(&out, " ", FormatDuration(elapsed), " elapsed");
  }
  return out;
}

void Progress::Draw(double now) {
  std::string line = absl::StrCat(label_, " ", Status(/*terminal=*/true, now));
  // Blank out what is left of a longer previous line.
  const size_t width = line.size();
  if (width < last_width_) line.append(last_width_ - width, ' ');
  last_width_ = width;
  options_.terminal("\r" + line);
  last_draw_ = now;
}

void Progress::Update(int64_t done, const std::map<std::string, double>& values) {
  if (finished_) return;
  done_ = done;
  for (const auto& [name, value] : values) values_[name] = value;
  const double now = options_.clock();
  if (terminal_) {
    if (last_draw_ < 0 || now - last_draw_ >= options_.redraw_seconds ||
        (total_ > 0 && done_ >= total_)) {
      Draw(now);
    }
    return;
  }
  const bool by_steps =
      options_.log_every_steps > 0 && done_ - last_logged_done_ >= options_.log_every_steps;
  const bool by_time =
      options_.log_every_seconds > 0 && now - last_log_ >= options_.log_every_seconds;
  const bool every_update = options_.log_every_steps <= 0 && options_.log_every_seconds <= 0;
  if (by_steps || by_time || every_update) {
    options_.log(absl::StrCat(label_, ": ", Status(/*terminal=*/false, now)));
    last_log_ = now;
    last_logged_done_ = done_;
  }
}

void Progress::Finish() {
  if (finished_) return;
  finished_ = true;
  const double now = options_.clock();
  if (terminal_) {
    if (last_draw_ >= 0) {
      Draw(now);
      options_.terminal("\n");
    }
  }
  const double elapsed = now - start_;
  const bool complete = total_ <= 0 || done_ >= total_;
  std::string summary =
      complete ? absl::StrFormat("%s: done, %d items in %s", label_, done_, FormatDuration(elapsed))
               : absl::StrFormat("%s: stopped at %d/%d after %s", label_, done_, total_,
                                 FormatDuration(elapsed));
  if (elapsed > 0) {
    absl::StrAppend(&summary, " (", Rate(static_cast<double>(done_ - options_.initial) / elapsed),
                    ")");
  }
  for (const auto& [name, value] : values_) {
    absl::StrAppend(&summary, " ", name, " ", FormatProgressValue(value));
  }
  options_.log(summary);
}

}  // namespace llava
