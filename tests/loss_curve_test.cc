#include "common/loss_curve.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "launch/progress.h"
#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::IsOk;
using ::llava::testing::StatusIs;

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---- A small XML well-formedness checker, enough to hold the SVG writer to XML rules:
// one root, balanced tags, quoted unique attributes, only predefined or numeric entities,
// no stray '<' or '&'. ----

struct XmlElement {
  std::string name;
  std::map<std::string, std::string> attrs;  // raw (still escaped) values
  std::string text;                          // raw text directly inside
  int parent = -1;                           // index in XmlDoc::elements
};

struct XmlDoc {
  std::string error;                 // empty when well-formed
  std::vector<XmlElement> elements;  // in document order
  std::vector<const XmlElement*> With(const std::string& name, const std::string& cls = "") const {
    std::vector<const XmlElement*> out;
    for (const XmlElement& e : elements) {
      auto it = e.attrs.find("class");
      if (e.name == name && (cls.empty() || (it != e.attrs.end() && it->second == cls))) {
        out.push_back(&e);
      }
    }
    return out;
  }
};

bool ValidEntities(const std::string& s) {
  for (size_t i = s.find('&'); i != std::string::npos; i = s.find('&', i + 1)) {
    size_t end = s.find(';', i);
    if (end == std::string::npos) return false;
    std::string name = s.substr(i + 1, end - i - 1);
    static const std::set<std::string> kNamed = {"amp", "lt", "gt", "quot", "apos"};
    if (!kNamed.count(name) && !(name.size() > 1 && name[0] == '#')) return false;
  }
  return true;
}

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' ||
         c == '.';
}

XmlDoc ParseXml(const std::string& xml) {
  XmlDoc doc;
  std::vector<size_t> open;  // indices into doc.elements
  size_t i = 0, roots = 0;
  auto fail = [&](const std::string& why) {
    doc.error = why + " at byte " + std::to_string(i);
    return doc;
  };
  if (xml.rfind("<?xml", 0) == 0) i = xml.find("?>") + 2;
  while (i < xml.size()) {
    size_t lt = xml.find('<', i);
    std::string text = xml.substr(i, (lt == std::string::npos ? xml.size() : lt) - i);
    if (!ValidEntities(text)) return fail("bad entity in text");
    if (open.empty() && text.find_first_not_of(" \n\t\r") != std::string::npos) {
      return fail("text outside the root");
    }
    if (!open.empty()) doc.elements[open.back()].text += text;
    if (lt == std::string::npos) break;
    i = lt + 1;
    if (xml[i] == '/') {
      size_t gt = xml.find('>', i);
      if (gt == std::string::npos) return fail("unclosed end tag");
      std::string name = xml.substr(i + 1, gt - i - 1);
      if (open.empty() || doc.elements[open.back()].name != name)
        return fail("mismatched </" + name + ">");
      open.pop_back();
      i = gt + 1;
      continue;
    }
    XmlElement e;
    while (i < xml.size() && IsNameChar(xml[i])) e.name += xml[i++];
    if (e.name.empty()) return fail("bad tag name");
    bool self_closing = false;
    while (true) {
      while (i < xml.size() && std::isspace(static_cast<unsigned char>(xml[i]))) ++i;
      if (i >= xml.size()) return fail("unclosed tag");
      if (xml.compare(i, 2, "/>") == 0) {
        self_closing = true;
        i += 2;
        break;
      }
      if (xml[i] == '>') {
        ++i;
        break;
      }
      std::string attr;
      while (i < xml.size() && IsNameChar(xml[i])) attr += xml[i++];
      if (attr.empty() || xml.compare(i, 2, "=\"") != 0)
        return fail("bad attribute in <" + e.name + ">");
      size_t close = xml.find('"', i + 2);
      if (close == std::string::npos) return fail("unterminated attribute");
      std::string value = xml.substr(i + 2, close - i - 2);
      if (value.find('<') != std::string::npos || !ValidEntities(value))
        return fail("bad attribute value");
      if (!e.attrs.emplace(attr, value).second) return fail("duplicate attribute " + attr);
      i = close + 1;
    }
    if (open.empty() && roots++ > 0) return fail("second root element");
    e.parent = open.empty() ? -1 : static_cast<int>(open.back());
    doc.elements.push_back(e);
    if (!self_closing) open.push_back(doc.elements.size() - 1);
  }
  if (!open.empty()) return fail("unclosed <" + doc.elements[open.back()].name + ">");
  if (roots != 1) return fail("no root element");
  return doc;
}

TEST(XmlCheckerTest, CatchesBrokenDocuments) {
  EXPECT_EQ(ParseXml("<a><b x=\"1\"/>t &amp; u</a>").error, "");
  EXPECT_NE(ParseXml("<a><b></a>").error, "");
  EXPECT_NE(ParseXml("<a x=1></a>").error, "");
  EXPECT_NE(ParseXml("<a>x & y</a>").error, "");
  EXPECT_NE(ParseXml("<a></a><b/>").error, "");
  EXPECT_NE(ParseXml("<a x=\"1\" x=\"2\"/>").error, "");
}

std::vector<std::pair<double, double>> PolylinePoints(const XmlElement& e) {
  std::vector<std::pair<double, double>> pts;
  for (absl::string_view pair : absl::StrSplit(e.attrs.at("points"), ' ')) {
    std::vector<std::string> xy = absl::StrSplit(pair, ',');
    pts.emplace_back(std::stod(xy.at(0)), std::stod(xy.at(1)));
  }
  return pts;
}

std::vector<std::string> TickLabels(const XmlDoc& doc, const std::string& anchor) {
  std::vector<std::string> out;
  for (const XmlElement& e : doc.elements) {
    auto it = e.attrs.find("text-anchor");
    if (e.parent < 0 || e.name != "text" || it == e.attrs.end() || it->second != anchor) continue;
    const auto& parent_attrs = doc.elements[e.parent].attrs;
    if (parent_attrs.count("class") && parent_attrs.at("class") == "tick-labels") {
      out.push_back(e.text);
    }
  }
  return out;
}

LossCurve Falling() {
  LossCurve curve;
  const double losses[] = {2.0, 1.5, 1.0, 0.8, 0.5};
  for (int i = 0; i < 5; ++i) curve.Add({i * 10, i * 0.25, losses[i], 1e-3, 100, i * 2.0});
  return curve;
}

TEST(NiceTicksTest, PicksRoundSpacings) {
  EXPECT_THAT(NiceTicks(0.5, 2.0, 6), ElementsAre(0.5, 1.0, 1.5, 2.0));
  EXPECT_THAT(NiceTicks(0, 40, 8), ElementsAre(0, 5, 10, 15, 20, 25, 30, 35, 40));
  EXPECT_THAT(NiceTicks(3, 97, 5), ElementsAre(20, 40, 60, 80));
  std::vector<double> small = NiceTicks(0.0012, 0.0031, 4);
  ASSERT_EQ(small.size(), 4u);
  EXPECT_NEAR(small[0], 0.0015, 1e-12);
  EXPECT_NEAR(small[3], 0.003, 1e-12);
  EXPECT_THAT(NiceTicks(1, 1, 5), ElementsAre(1));  // degenerate ranges give one tick
}

TEST(EmaTest, IsBiasCorrectedAndSkipsNonFinite) {
  std::vector<double> got = Ema({2, 1, NAN, 4}, 0.5);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_DOUBLE_EQ(got[0], 2.0);  // no pull towards 0 at the start
  EXPECT_DOUBLE_EQ(got[1], (0.25 * 2 + 0.5 * 1) / 0.75);
  EXPECT_TRUE(std::isnan(got[2]));
  EXPECT_DOUBLE_EQ(got[3], (0.125 * 2 + 0.25 * 1 + 0.5 * 4) / 0.875);
}

TEST(LossCurveTest, CsvContentIsExact) {
  LossCurve curve;
  curve.Add({1, 0.01, 2.5, 0.001, 123.456, 1.5});
  curve.Add({2, 0.02, 2.25, 0.00095, 130, 3});
  curve.Add({3, 0.03, NAN, 1e-7, 0, 4.25});
  EXPECT_EQ(curve.ToCsv(),
            "step,epoch,loss,lr,samples_per_s,seconds\n"
            "1,0.01,2.5,0.001,123.456,1.5\n"
            "2,0.02,2.25,0.00095,130,3\n"
            "3,0.03,nan,1e-07,0,4.25\n");
}

TEST(LossCurveTest, CsvFileRoundTrips) {
  const std::string dir = testing::MakeTempDir("loss_curve");
  LossCurve curve = Falling();
  curve.Add({50, 1.25, NAN, 1e-4, 99.5, 10.5});
  ASSERT_THAT(curve.WriteCsv(dir + "/loss.csv"), IsOk());
  auto text = ReadFile(dir + "/loss.csv");
  ASSERT_THAT(text, IsOk());
  EXPECT_EQ(*text, curve.ToCsv());
  auto back = LossCurve::ReadCsv(dir + "/loss.csv");
  ASSERT_THAT(back, IsOk());
  ASSERT_EQ(back->points().size(), 6u);
  EXPECT_EQ(back->points()[4].step, 40);
  EXPECT_DOUBLE_EQ(back->points()[4].loss, 0.5);
  EXPECT_DOUBLE_EQ(back->points()[4].epoch, 1.0);
  EXPECT_TRUE(std::isnan(back->points()[5].loss));
  EXPECT_EQ(back->ToCsv(), curve.ToCsv());
  // CRLF line ends (a file saved by a spreadsheet) read the same.
  std::string crlf = absl::StrReplaceAll(curve.ToCsv(), {{"\n", "\r\n"}});
  auto from_crlf = LossCurve::FromCsv(crlf, "crlf.csv");
  ASSERT_THAT(from_crlf, IsOk());
  EXPECT_EQ(from_crlf->ToCsv(), curve.ToCsv());
}

TEST(LossCurveTest, CsvErrorsNameFileLineAndColumn) {
  const std::string header = std::string(LossCurve::kCsvHeader) + "\n";
  auto error = [](const std::string& text) {
    auto got = LossCurve::FromCsv(text, "run/loss.csv");
    EXPECT_FALSE(got.ok());
    return got.ok() ? "" : std::string(got.status().message());
  };
  EXPECT_THAT(error(""), HasSubstr("run/loss.csv: line 1: expected the header"));
  EXPECT_THAT(error("step,loss\n1,2\n"), HasSubstr("line 1: expected the header"));
  EXPECT_THAT(error(header + "1,0,1,1,1,1\n2,0,1,1,1\n"),
              HasSubstr("run/loss.csv: line 3: expected 6 columns, got 5"));
  EXPECT_THAT(error(header + "x,0,1,1,1,1\n"),
              HasSubstr("line 2: column step: not an integer: 'x'"));
  EXPECT_THAT(error(header + "1,0,abc,1,1,1\n"),
              HasSubstr("line 2: column loss: not a number: 'abc'"));
  EXPECT_THAT(error(header + "1,0,1,1,1,\n"), HasSubstr("column seconds: not a number: ''"));
  auto missing = LossCurve::ReadCsv("/nonexistent/loss.csv");
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/loss.csv")));
}

TEST(LossCurveTest, SvgIsWellFormedWithAxesTicksAndLines) {
  const std::string svg = Falling().ToSvg("Projector loss");
  XmlDoc doc = ParseXml(svg);
  ASSERT_EQ(doc.error, "") << svg;
  ASSERT_FALSE(doc.elements.empty());
  EXPECT_EQ(doc.elements[0].name, "svg");
  EXPECT_EQ(doc.elements[0].attrs.at("xmlns"), "http://www.w3.org/2000/svg");
  EXPECT_EQ(doc.elements[0].attrs.at("width"), "800");
  ASSERT_EQ(doc.With("text", "title").size(), 1u);
  EXPECT_EQ(doc.With("text", "title")[0]->text, "Projector loss");
  EXPECT_EQ(doc.With("text", "x-label")[0]->text, "step");
  EXPECT_EQ(doc.With("text", "y-label")[0]->text, "loss");

  EXPECT_THAT(TickLabels(doc, "middle"),
              ElementsAre("0", "5", "10", "15", "20", "25", "30", "35", "40"));
  EXPECT_THAT(TickLabels(doc, "end"), ElementsAre("0.5", "1", "1.5", "2"));

  // Plot area: x 70..780, y 40 (top) .. 430 (bottom); the y axis spans exactly 0.5..2.
  ASSERT_EQ(doc.With("polyline", "loss").size(), 1u);
  auto loss = PolylinePoints(*doc.With("polyline", "loss")[0]);
  ASSERT_EQ(loss.size(), 5u);
  EXPECT_EQ(loss.front(), std::make_pair(70.0, 40.0));
  EXPECT_EQ(loss.back(), std::make_pair(780.0, 430.0));
  EXPECT_NEAR(loss[2].first, 425.0, 0.05);
  EXPECT_NEAR(loss[2].second, 430 - (1.0 - 0.5) / 1.5 * 390, 0.05);

  ASSERT_EQ(doc.With("polyline", "loss-ema").size(), 1u);
  auto ema = PolylinePoints(*doc.With("polyline", "loss-ema")[0]);
  ASSERT_EQ(ema.size(), 5u);
  EXPECT_EQ(ema.front(), loss.front());  // bias correction: the EMA starts at the first loss
  EXPECT_LT(ema.back().second, loss.back().second);  // lags above the falling loss
}

TEST(LossCurveTest, SvgWithoutSmoothingHasOneLine) {
  LossPlotOptions options;
  options.ema_beta = 0;
  XmlDoc doc = ParseXml(Falling().ToSvg("t", options));
  ASSERT_EQ(doc.error, "");
  EXPECT_EQ(doc.With("polyline").size(), 1u);
}

TEST(LossCurveTest, SvgEscapesTheTitleAndSkipsNonFiniteLosses) {
  LossCurve curve = Falling();
  curve.Add({50, 1.25, NAN, 1e-3, 100, 10});
  curve.Add({60, 1.5, INFINITY, 1e-3, 100, 12});
  const std::string title = "a<b & \"c\" 'd' \x01 bad \xFF byte \xC3\xA9";
  const std::string svg = curve.ToSvg(title);
  XmlDoc doc = ParseXml(svg);
  ASSERT_EQ(doc.error, "") << svg;
  EXPECT_EQ(doc.With("text", "title")[0]->text,
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos; ? bad ? byte \xC3\xA9");
  EXPECT_EQ(PolylinePoints(*doc.With("polyline", "loss")[0]).size(), 5u);
  // The x axis still ends at the last plotted step (40), not at 60.
  EXPECT_EQ(PolylinePoints(*doc.With("polyline", "loss")[0]).back().first, 780.0);
}

TEST(LossCurveTest, SvgOfEmptyAndOnePointCurvesIsStillAPlot) {
  XmlDoc empty = ParseXml(LossCurve().ToSvg("empty"));
  ASSERT_EQ(empty.error, "");
  EXPECT_EQ(empty.With("polyline").size(), 0u);
  EXPECT_EQ(empty.With("text", "no-data").size(), 1u);

  LossCurve one;
  one.Add({7, 0, 0.25, 1e-3, 1, 1});
  XmlDoc single = ParseXml(one.ToSvg("one"));
  ASSERT_EQ(single.error, "");
  EXPECT_EQ(single.With("circle", "loss-point").size(), 1u);
  for (const std::string& label : TickLabels(single, "end")) {
    EXPECT_FALSE(label.empty());
  }
}

TEST(LossCurveTest, LogScaleUsesDecadesAndDropsNonPositiveLosses) {
  LossCurve curve;
  curve.Add({0, 0, 5.0, 1e-3, 1, 1});
  curve.Add({1, 0, 0.5, 1e-3, 1, 1});
  curve.Add({2, 0, 0.0, 1e-3, 1, 1});
  curve.Add({3, 0, 0.2, 1e-3, 1, 1});
  LossPlotOptions options;
  options.log_y = true;
  XmlDoc doc = ParseXml(curve.ToSvg("log", options));
  ASSERT_EQ(doc.error, "");
  EXPECT_THAT(TickLabels(doc, "end"), ElementsAre("0.1", "1", "10"));
  auto pts = PolylinePoints(*doc.With("polyline", "loss")[0]);
  ASSERT_EQ(pts.size(), 3u);
  // The axis spans 0.1..10, two decades over 390 pixels.
  EXPECT_NEAR(pts[1].second, 430 - (std::log10(0.5) + 1) / 2 * 390, 0.05);
}

TEST(LossCurveTest, WriteSvgReplacesTheFile) {
  const std::string dir = testing::MakeTempDir("loss_curve_svg");
  const std::string path = dir + "/loss.svg";
  ASSERT_THAT(WriteFileAtomic(path, "old"), IsOk());
  ASSERT_THAT(Falling().WriteSvg(path, "Projector loss"), IsOk());
  auto text = ReadFile(path);
  ASSERT_THAT(text, IsOk());
  EXPECT_EQ(*text, Falling().ToSvg("Projector loss"));
  absl::Status st = Falling().WriteSvg("/nonexistent/dir/loss.svg", "x");
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("/nonexistent/dir/loss.svg"));
}

// ---- Progress (launch/progress.cc) ----

struct FakeIo {
  double now = 0;
  std::string terminal;
  std::vector<std::string> logs;
  ProgressOptions Options(ProgressOptions::Mode mode) {
    ProgressOptions o;
    o.mode = mode;
    o.clock = [this] { return now; };
    o.terminal = [this](const std::string& s) { terminal += s; };
    o.log = [this](const std::string& s) { logs.push_back(s); };
    return o;
  }
};

TEST(ProgressTest, FormatsDurationsAndValues) {
  EXPECT_EQ(FormatDuration(25), "0:25");
  EXPECT_EQ(FormatDuration(723), "12:03");
  EXPECT_EQ(FormatDuration(3723), "1:02:03");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatProgressValue(0.123), "0.123");
  EXPECT_EQ(FormatProgressValue(0.001), "1.0e-03");
  EXPECT_EQ(FormatProgressValue(2.5), "2.5");
  EXPECT_EQ(FormatProgressValue(0), "0");
}

TEST(ProgressTest, TerminalRedrawsOneLineAtMostTenTimesASecond) {
  FakeIo io;
  ProgressOptions options = io.Options(ProgressOptions::Mode::kTerminal);
  options.bar_width = 10;
  {
    Progress progress("train", 10, options);
    io.now = 2;
    progress.Update(4, {{"loss", 0.123}, {"lr", 0.001}});
    EXPECT_EQ(io.terminal, "\rtrain [====>     ] 4/10 40% loss 0.123 lr 1.0e-03 2.0 it/s ETA 0:03");
    io.now = 2.05;
    progress.Update(5, {{"loss", 0.1}});
    EXPECT_EQ(io.terminal.find("5/10"), std::string::npos);  // too soon to redraw
    io.now = 2.2;
    io.terminal.clear();
    progress.Update(5, {{"loss", 0.1}});
    // Shorter than the previous line: padded so that no old characters remain.
    EXPECT_EQ(io.terminal, "\rtrain [=====>    ] 5/10 50% loss 0.1 lr 1.0e-03 2.3 it/s ETA 0:02  ");
    io.now = 2.25;
    io.terminal.clear();
    progress.Update(10);  // the final state is always drawn
    EXPECT_THAT(io.terminal, HasSubstr("[==========] 10/10 100%"));
    EXPECT_THAT(io.terminal, HasSubstr("0:02 elapsed"));
    io.terminal.clear();
    progress.Finish();
    EXPECT_THAT(io.terminal, ::testing::EndsWith("\n"));
    progress.Finish();
  }
  ASSERT_EQ(io.logs.size(), 1u);  // Finish and the destructor log one summary
  EXPECT_EQ(io.logs[0], "train: done, 10 items in 0:02 (4.4 it/s) loss 0.1 lr 1.0e-03");
}

TEST(ProgressTest, LogModeLogsEveryNSteps) {
  FakeIo io;
  ProgressOptions options = io.Options(ProgressOptions::Mode::kLog);
  options.log_every_steps = 100;
  options.log_every_seconds = 0;
  Progress progress("train", 1000, options);
  io.now = 1;
  progress.Update(50, {{"loss", 0.5}, {"lr", 0.001}});
  io.now = 2;
  progress.Update(100, {{"loss", 0.5}, {"lr", 0.001}});
  io.now = 3;
  progress.Update(150);
  io.now = 4;
  progress.Update(200);
  EXPECT_THAT(io.logs, ElementsAre("train: 100/1000 (10%) loss 0.5 lr 1.0e-03 50.0 it/s ETA 0:18",
                                   "train: 200/1000 (20%) loss 0.5 lr 1.0e-03 50.0 it/s ETA 0:16"));
  EXPECT_EQ(io.terminal, "");
  io.now = 10;
  progress.Finish();
  EXPECT_EQ(io.logs.back(),
            "train: stopped at 200/1000 after 0:10 (20.0 it/s) loss 0.5 lr 1.0e-03");
}

TEST(ProgressTest, LogModeLogsEveryFewSecondsAndCountsOnlyNewWork) {
  FakeIo io;
  ProgressOptions options = io.Options(ProgressOptions::Mode::kLog);
  options.log_every_seconds = 10;
  options.initial = 500;                  // resumed: the first 500 were done by an earlier run
  Progress progress("eval", 0, options);  // unknown total
  for (int t = 5; t <= 20; t += 5) {
    io.now = t;
    progress.Update(500 + 4 * t);
  }
  EXPECT_THAT(io.logs, ElementsAre("eval: 540 it 4.0 it/s 0:10 elapsed",
                                   "eval: 580 it 4.0 it/s 0:20 elapsed"));
  io.now = 40;
  progress.Update(501 + 4 * 20);  // a slow stretch
  EXPECT_THAT(io.logs.back(), HasSubstr("2.0 it/s"));
  io.now = 3000;
  progress.Update(502 + 4 * 20);
  EXPECT_THAT(io.logs.back(), HasSubstr("36.6 s/it"));
}

}  // namespace
}  // namespace llava
