// LossCurve: training-loss rows (step, epoch, loss, lr, throughput, time) written as CSV and
// as a self-contained SVG plot; ReadCsv lets a resumed run continue its curve.
// Not thread-safe: the training loop owns it; writers only read it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

struct LossPoint {
  int64_t step = 0;
  double epoch = 0;
  double loss = 0;
  double lr = 0;
  double samples_per_s = 0;
  double seconds = 0;  // since the start of training
};

struct LossPlotOptions {
  int width = 800, height = 480;
  // Weight of the past in the smoothed (EMA, bias-corrected) line; 0 draws no smoothed line.
  double ema_beta = 0.9;
  bool log_y = false;  // log10 loss axis; non-positive losses are then left out
};

class LossCurve {
 public:
  // The CSV header; every row has these columns in this order.
  static constexpr const char* kCsvHeader = "step,epoch,loss,lr,samples_per_s,seconds";

  void Add(const LossPoint& point) { points_.push_back(point); }
  const std::vector<LossPoint>& points() const { return points_; }
  bool empty() const { return points_.empty(); }

  // Numbers as %.6g (step as an integer), so reading and rewriting a file keeps its bytes.
  std::string ToCsv() const;
  // An SVG 1.1 document: title, axes with ticks and labels, grid, the loss line and its
  // EMA. Non-finite losses are left out of the lines.
  std::string ToSvg(const std::string& title, const LossPlotOptions& options = {}) const;

  // Both replace `path` atomically.
  absl::Status WriteCsv(const std::string& path) const;
  absl::Status WriteSvg(const std::string& path, const std::string& title,
                        const LossPlotOptions& options = {}) const;

  // Reads WriteCsv output; errors name the file, line and column at fault.
  static absl::StatusOr<LossCurve> ReadCsv(const std::string& path);
  static absl::StatusOr<LossCurve> FromCsv(const std::string& text, const std::string& source);

 private:
  std::vector<LossPoint> points_;
};

// Evenly spaced round tick values (1, 2 or 5 times a power of ten) inside [lo, hi], about
// `target` of them. Exposed for tests.
std::vector<double> NiceTicks(double lo, double hi, int target);

// Bias-corrected exponential moving average of `values`: out[i] is NaN where values[i] is
// not finite, and such values do not enter the average.
std::vector<double> Ema(const std::vector<double>& values, double beta);

}  // namespace llava
