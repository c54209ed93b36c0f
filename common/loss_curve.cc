#include "common/loss_curve.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace llava {
namespace {

constexpr int kCsvColumns = 6;
constexpr char kLossColor[] = "#1f77b4";
constexpr char kEmaColor[] = "#d62728";

// ---- SVG helpers ----

// Length of the valid UTF-8 sequence at text[i], or 0 if it is not one.
size_t Utf8Length(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

// Text safe inside an XML element or attribute: markup characters escaped, characters XML
// 1.0 forbids (control bytes, broken UTF-8) replaced by '?'.
std::string EscapeXml(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    const size_t n = Utf8Length(text, i);
    if (n == 0 || (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n')) {
      out += '?';
      i += n == 0 ? 1 : n;
      continue;
    }
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out.append(text, i, n);
    }
    i += n;
  }
  return out;
}

// Tick labels: %g of the value snapped to the tick spacing, so 0.30000000000000004 and
// 1e-17 print as 0.3 and 0.
std::string TickLabel(double v, double spacing) {
  if (std::fabs(v) < spacing * 1e-6) v = 0;
  return absl::StrFormat("%g", v);
}

// One plot axis: data range -> pixel range, with its ticks.
struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;  // in data units
  double spacing = 1;         // between ticks, in data (or decade) units

  double Pos(double v) const { return log ? std::log10(v) : v; }
  // Pixel for value v between pixel p0 (at lo) and p1 (at hi).
  double Map(double v, double p0, double p1) const {
    return p0 + (Pos(v) - Pos(lo)) / (Pos(hi) - Pos(lo)) * (p1 - p0);
  }
};

// An axis for values in [lo, hi]; `pad` extends the range to the outer ticks.
Axis MakeAxis(double lo, double hi, bool log, bool pad, int target) {
  Axis axis;
  axis.log = log;
  if (log) {
    double a = std::floor(std::log10(lo)), b = std::ceil(std::log10(hi));
    if (b <= a) b = a + 1;
    axis.lo = std::pow(10.0, a);
    axis.hi = std::pow(10.0, b);
    const double every = std::max(1.0, std::ceil((b - a) / target));
    for (double e = a; e <= b + 1e-9; e += every) axis.ticks.push_back(std::pow(10.0, e));
    axis.spacing = 0;  // labels print as they are
    return axis;
  }
  if (!(hi > lo)) {  // one value: give it room
    const double room = lo == 0 ? 1.0 : std::fabs(lo) * 0.5;
    lo -= room;
    hi += room;
  }
  std::vector<double> ticks = NiceTicks(lo, hi, target);
  axis.spacing = ticks.size() > 1 ? ticks[1] - ticks[0] : hi - lo;
  if (pad) {
    lo = std::floor(lo / axis.spacing + 1e-9) * axis.spacing;
    hi = std::ceil(hi / axis.spacing - 1e-9) * axis.spacing;
    ticks = NiceTicks(lo, hi, target);
  }
  axis.lo = lo;
  axis.hi = hi;
  axis.ticks = std::move(ticks);
  return axis;
}

struct Frame {
  double left, right, top, bottom;  // the plot area in pixels
};

// A line through `pts`; `opacity` below 1 lets the EMA stand out over the raw loss.
std::string Polyline(const std::vector<std::pair<double, double>>& pts, const char* cls,
                     const char* color, double width, double opacity) {
  std::string out = absl::StrFormat(
      "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%g\" "
      "stroke-opacity=\"%g\" points=\"",
      cls, color, width, opacity);
  for (size_t i = 0; i < pts.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : " ",
                    absl::StrFormat("%.1f,%.1f", pts[i].first, pts[i].second));
  }
  return out + "\"/>\n";
}

// Pixel positions of the plottable (step, value) pairs.
std::vector<std::pair<double, double>> ToPixels(const std::vector<double>& steps,
                                                const std::vector<double>& values, const Axis& x,
                                                const Axis& y, const Frame& f) {
  std::vector<std::pair<double, double>> pts;
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (!std::isfinite(v) || (y.log && v <= 0)) continue;
    pts.emplace_back(x.Map(steps[i], f.left, f.right), y.Map(v, f.bottom, f.top));
  }
  return pts;
}

std::string LineSvg(double x1, double y1, double x2, double y2) {
  return absl::StrFormat("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x1, y1, x2,
                         y2);
}

std::string TextSvg(double x, double y, const char* anchor, const std::string& text) {
  return absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">%s</text>\n", x, y, anchor,
                         text);
}

// Grid lines, the two axes with tick marks, and the tick labels.
std::string AxesSvg(const Axis& x, const Axis& y, const Frame& f) {
  std::string grid = "<g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
  std::string marks = "<g class=\"axes\" stroke=\"#000000\" stroke-width=\"1\">\n";
  std::string labels = "<g class=\"tick-labels\" fill=\"#333333\">\n";
  for (double t : x.ticks) {
    const double px = x.Map(t, f.left, f.right);
    absl::StrAppend(&grid, LineSvg(px, f.top, px, f.bottom));
    absl::StrAppend(&marks, LineSvg(px, f.bottom, px, f.bottom + 5));
    absl::StrAppend(&labels, TextSvg(px, f.bottom + 18, "middle", TickLabel(t, x.spacing)));
  }
  for (double t : y.ticks) {
    const double py = y.Map(t, f.bottom, f.top);
    absl::StrAppend(&grid, LineSvg(f.left, py, f.right, py));
    absl::StrAppend(&marks, LineSvg(f.left - 5, py, f.left, py));
    absl::StrAppend(&labels, TextSvg(f.left - 8, py + 4, "end", TickLabel(t, y.spacing)));
  }
  absl::StrAppend(&marks, LineSvg(f.left, f.bottom, f.right, f.bottom));
  absl::StrAppend(&marks, LineSvg(f.left, f.bottom, f.left, f.top));
  return absl::StrCat(grid, "</g>\n", marks, "</g>\n", labels, "</g>\n");
}

// A key in the top right corner: a colored line and a name per entry.
std::string LegendSvg(const Frame& f,
                      const std::vector<std::pair<std::string, const char*>>& entries) {
  std::string out = "<g class=\"legend\">\n";
  for (size_t i = 0; i < entries.size(); ++i) {
    const double y = f.top + 12 + 18 * static_cast<double>(i);
    absl::StrAppend(&out, absl::StrFormat("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                                          "stroke=\"%s\" stroke-width=\"2\"/>\n",
                                          f.right - 150, y, f.right - 130, y, entries[i].second));
    absl::StrAppend(&out, absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", f.right - 125,
                                          y + 4, EscapeXml(entries[i].first)));
  }
  return out + "</g>\n";
}

// ---- CSV reading ----

absl::Status CsvError(const std::string& source, size_t line, const std::string& what) {
  return absl::DataLossError(absl::StrCat("loss curve ", source, ": line ", line, ": ", what));
}

absl::StatusOr<LossPoint> ParseRow(const std::string& row, size_t line, const std::string& source) {
  static const char* const kNames[kCsvColumns] = {"step", "epoch",         "loss",
                                                  "lr",   "samples_per_s", "seconds"};
  std::vector<std::string> cells = absl::StrSplit(row, ',');
  if (cells.size() != kCsvColumns) {
    return CsvError(source, line,
                    absl::StrCat("expected ", kCsvColumns, " columns, got ", cells.size()));
  }
  LossPoint p;
  if (!absl::SimpleAtoi(cells[0], &p.step)) {
    return CsvError(source, line, absl::StrCat("column step: not an integer: '", cells[0], "'"));
  }
  double* doubles[] = {&p.epoch, &p.loss, &p.lr, &p.samples_per_s, &p.seconds};
  for (int c = 1; c < kCsvColumns; ++c) {
    if (!absl::SimpleAtod(cells[c], doubles[c - 1])) {
      return CsvError(source, line,
                      absl::StrCat("column ", kNames[c], ": not a number: '", cells[c], "'"));
    }
  }
  return p;
}

}  // namespace

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!std::isfinite(hi - lo) || !(hi > lo) || target < 1) return {lo};
  const double raw = (hi - lo) / target;
  const double decade = std::pow(10.0, std::floor(std::log10(raw)));
  double spacing = 10 * decade;
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * decade >= raw * (1 - 1e-9)) {
      spacing = m * decade;
      break;
    }
  }
  std::vector<double> ticks;
  const double first = std::ceil(lo / spacing - 1e-9);
  const double last = std::floor(hi / spacing + 1e-9);
  for (double k = first; k <= last; k += 1) ticks.push_back(k * spacing);
  return ticks;
}

std::vector<double> Ema(const std::vector<double>& values, double beta) {
  std::vector<double> out;
  out.reserve(values.size());
  double avg = 0, weight = 0;
  for (double v : values) {
    if (!std::isfinite(v)) {
      out.push_back(std::numeric_limits<double>::quiet_NaN());
      continue;
    }
    avg = beta * avg + (1 - beta) * v;
    weight = beta * weight + (1 - beta);
    out.push_back(avg / weight);
  }
  return out;
}

std::string LossCurve::ToCsv() const {
  std::string out = absl::StrCat(kCsvHeader, "\n");
  for (const LossPoint& p : points_) {
    absl::StrAppend(&out, absl::StrFormat("%d,%.6g,%.6g,%.6g,%.6g,%.6g\n", p.step, p.epoch, p.loss,
                                          p.lr, p.samples_per_s, p.seconds));
  }
  return out;
}

std::string LossCurve::ToSvg(const std::string& title, const LossPlotOptions& options) const {
  // Smaller canvases leave no room for the plot between the labels.
  const int width = std::max(options.width, 240), height = std::max(options.height, 160);
  const double w = width, h = height;
  const Frame f{70, w - 20, 40, h - 50};
  std::vector<double> steps, losses;
  for (const LossPoint& p : points_) {
    steps.push_back(static_cast<double>(p.step));
    losses.push_back(p.loss);
  }
  const bool smooth = options.ema_beta > 0 && options.ema_beta < 1;
  const std::vector<double> ema = smooth ? Ema(losses, options.ema_beta) : std::vector<double>{};

  // Ranges over the points that can be drawn.
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (size_t i = 0; i < losses.size(); ++i) {
    if (!std::isfinite(losses[i]) || (options.log_y && losses[i] <= 0)) continue;
    xlo = std::min(xlo, steps[i]);
    xhi = std::max(xhi, steps[i]);
    ylo = std::min(ylo, losses[i]);
    yhi = std::max(yhi, losses[i]);
  }
  const bool has_data = xlo <= xhi;
  if (!has_data) {
    xlo = 0, xhi = 1;
    ylo = options.log_y ? 0.1 : 0, yhi = 1;
  }
  const Axis x = MakeAxis(xlo, xhi, /*log=*/false, /*pad=*/false, 8);
  const Axis y = MakeAxis(ylo, yhi, options.log_y, /*pad=*/true, 6);

  std::string svg = absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect class=\"background\" x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n"
      "<text class=\"title\" x=\"%.1f\" y=\"24\" text-anchor=\"middle\" "
      "font-size=\"16\">%s</text>\n",
      width, height, width, height, width, height, w / 2, EscapeXml(title));
  absl::StrAppend(&svg, AxesSvg(x, y, f));
  absl::StrAppend(
      &svg, absl::StrFormat(
                "<text class=\"x-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n"
                "<text class=\"y-label\" x=\"16\" y=\"%.1f\" text-anchor=\"middle\" "
                "transform=\"rotate(-90 16 %.1f)\">%s</text>\n",
                (f.left + f.right) / 2, h - 12, (f.top + f.bottom) / 2, (f.top + f.bottom) / 2,
                options.log_y ? "loss (log scale)" : "loss"));
  if (!has_data) {
    absl::StrAppend(&svg, absl::StrFormat("<text class=\"no-data\" x=\"%.1f\" y=\"%.1f\" "
                                          "text-anchor=\"middle\">no data</text>\n",
                                          (f.left + f.right) / 2, (f.top + f.bottom) / 2));
    return svg + "</svg>\n";
  }
  const auto loss_pts = ToPixels(steps, losses, x, y, f);
  absl::StrAppend(&svg,
                  Polyline(loss_pts, "loss", kLossColor, smooth ? 1 : 1.5, smooth ? 0.45 : 1));
  if (loss_pts.size() == 1) {  // a one-point polyline draws nothing
    absl::StrAppend(&svg, absl::StrFormat("<circle class=\"loss-point\" cx=\"%.1f\" cy=\"%.1f\" "
                                          "r=\"3\" fill=\"%s\"/>\n",
                                          loss_pts[0].first, loss_pts[0].second, kLossColor));
  }
  std::vector<std::pair<std::string, const char*>> legend = {{"loss", kLossColor}};
  if (smooth) {
    absl::StrAppend(&svg, Polyline(ToPixels(steps, ema, x, y, f), "loss-ema", kEmaColor, 2, 1));
    legend.emplace_back(absl::StrFormat("EMA (beta %g)", options.ema_beta), kEmaColor);
  }
  return absl::StrCat(svg, LegendSvg(f, legend), "</svg>\n");
}

absl::Status LossCurve::WriteCsv(const std::string& path) const {
  return WriteFileAtomic(path, ToCsv());
}

absl::Status LossCurve::WriteSvg(const std::string& path, const std::string& title,
                                 const LossPlotOptions& options) const {
  return WriteFileAtomic(path, ToSvg(title, options));
}

absl::StatusOr<LossCurve> LossCurve::ReadCsv(const std::string& path) {
  LM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return FromCsv(text, path);
}

absl::StatusOr<LossCurve> LossCurve::FromCsv(const std::string& text, const std::string& source) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (std::string& line : lines) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF from a spreadsheet
  }
  if (!lines.empty() && lines.back().empty()) lines.pop_back();  // the final newline
  if (lines.empty() || lines[0] != kCsvHeader) {
    return CsvError(source, 1, absl::StrCat("expected the header '", kCsvHeader, "'"));
  }
  LossCurve curve;
  for (size_t i = 1; i < lines.size(); ++i) {
    LM_ASSIGN_OR_RETURN(LossPoint p, ParseRow(lines[i], i + 1, source));
    curve.Add(p);
  }
  return curve;
}

}  // namespace llava
