#include "common/eval_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/answer_metric.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::IsOk;
using ::llava::testing::StatusIs;

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

const std::vector<std::string> kQuestions = {"What digit is this?", "Which number is shown?"};

EvalSample Sample(int64_t question, int64_t index, int64_t label, std::string answer) {
  EvalSample s{index, question, label, std::move(answer), std::nullopt};
  s.predicted = ParseAnswerDigit(s.answer);
  return s;
}

// Twelve answers whose statistics are worked out by hand below.
std::vector<EvalSample> FixtureSamples() {
  return {
      Sample(0, 0, 7, "The digit is 7."),   // right
      Sample(0, 1, 2, "The digit is 2."),   // right
      Sample(0, 2, 1, "The digit is 7."),   // wrong: 7
      Sample(0, 3, 0, "I cannot tell"),     // wrong: no number
      Sample(0, 4, 4, "four"),              // right
      Sample(0, 5, 1, "The digit is 10."),  // wrong: 10 is no class, goes to "none"
      Sample(1, 0, 7, "seven"),             // right
      Sample(1, 1, 2, "2"),                 // right
      Sample(1, 2, 1, "1"),                 // right
      Sample(1, 3, 0, "eight"),             // wrong: 8
      Sample(1, 4, 4, "4"),                 // right
      Sample(1, 5, 1, "one"),               // right
  };
}

EvalReport FixtureReport() {
  EvalReport report(kQuestions);
  for (EvalSample& s : FixtureSamples()) report.Add(std::move(s));
  report.metadata()["model"] = "llama-3.1-8b";
  report.metadata()["checkpoint"] = "ckpt/step-1000";
  return report;
}

std::vector<std::tuple<int64_t, int64_t>> Keys(const EvalReport& r) {
  std::vector<std::tuple<int64_t, int64_t>> keys;
  for (const EvalSample& s : r.samples()) keys.emplace_back(s.question, s.index);
  return keys;
}

TEST(EvalReportTest, StatisticsMatchHandCount) {
  EvalReport report = FixtureReport();
  EXPECT_EQ(report.NumSamples(), 12);
  EXPECT_EQ(report.NumCorrect(), 8);
  EXPECT_DOUBLE_EQ(report.Accuracy(), 8.0 / 12.0);
  EXPECT_DOUBLE_EQ(report.QuestionAccuracy(0), 3.0 / 6.0);
  EXPECT_DOUBLE_EQ(report.QuestionAccuracy(1), 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(report.ClassAccuracy(7), 1.0);
  EXPECT_DOUBLE_EQ(report.ClassAccuracy(2), 1.0);
  EXPECT_DOUBLE_EQ(report.ClassAccuracy(1), 2.0 / 4.0);
  EXPECT_DOUBLE_EQ(report.ClassAccuracy(0), 0.0);
  EXPECT_DOUBLE_EQ(report.ClassAccuracy(4), 1.0);
  EXPECT_DOUBLE_EQ(report.ClassAccuracy(3), 0.0);  // no samples

  std::vector<std::vector<int64_t>> want(10, std::vector<int64_t>(11, 0));
  want[7][7] = 2;
  want[2][2] = 2;
  want[1][1] = 2;
  want[1][7] = 1;
  want[1][10] = 1;  // "10"
  want[0][10] = 1;  // no number
  want[0][8] = 1;
  want[4][4] = 2;
  EXPECT_EQ(report.Confusion(), want);
  EXPECT_EQ(report.none_column(), 10);
}

TEST(EvalReportTest, EmptyReportHasZeroAccuracy) {
  EvalReport report(kQuestions);
  EXPECT_EQ(report.NumSamples(), 0);
  EXPECT_EQ(report.Accuracy(), 0.0);
  EXPECT_EQ(report.QuestionAccuracy(1), 0.0);
  EXPECT_EQ(report.Confusion(), std::vector<std::vector<int64_t>>(10, std::vector<int64_t>(11)));
  auto back = EvalReport::FromJson(report.ToJson(), "empty.json");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->ToJson(), report.ToJson());
  EXPECT_THAT(report.ToTable(), HasSubstr("accuracy 0.00% (0/0 correct)"));
}

TEST(EvalReportTest, SamplesAreSortedWhateverTheAddOrder) {
  std::vector<EvalSample> samples = FixtureSamples();
  std::mt19937 rng(7);
  std::shuffle(samples.begin(), samples.end(), rng);
  EvalReport report(kQuestions);
  for (EvalSample& s : samples) report.Add(std::move(s));
  std::vector<std::tuple<int64_t, int64_t>> want;
  for (int64_t q = 0; q < 2; ++q) {
    for (int64_t i = 0; i < 6; ++i) want.emplace_back(q, i);
  }
  EXPECT_EQ(Keys(report), want);
  EXPECT_EQ(report.samples()[2].answer, "The digit is 7.");
  EXPECT_EQ(report.samples()[2].label, 1);
}

TEST(EvalReportTest, MergedShardsEqualTheSingleReportInEitherOrder) {
  const EvalReport single = FixtureReport();
  // Two workers take interleaved samples and add them in scrambled order.
  std::vector<EvalSample> samples = FixtureSamples();
  std::mt19937 rng(11);
  std::shuffle(samples.begin(), samples.end(), rng);
  EvalReport shard0(kQuestions), shard1(kQuestions);
  for (const EvalSample& s : samples) (s.index % 2 == 0 ? shard0 : shard1).Add(s);
  for (EvalReport* shard : {&shard0, &shard1}) {
    shard->metadata() = single.metadata();
  }
  EvalReport a = shard0, b = shard1;
  ASSERT_THAT(a.Merge(shard1), IsOk());
  ASSERT_THAT(b.Merge(shard0), IsOk());
  EXPECT_EQ(a.ToJson(), single.ToJson());
  EXPECT_EQ(b.ToJson(), single.ToJson());
  EXPECT_EQ(a.Confusion(), single.Confusion());
  EXPECT_EQ(a.ToTable(), single.ToTable());
}

TEST(EvalReportTest, MergeKeepsOwnMetadataAndAddsTheOthersNewKeys) {
  EvalReport a(kQuestions), b(kQuestions);
  a.metadata()["model"] = "a-model";
  a.metadata()["seconds"] = "3";
  b.metadata()["model"] = "b-model";
  b.metadata()["checkpoint"] = "ck";
  ASSERT_THAT(a.Merge(b), IsOk());
  EXPECT_EQ(a.metadata(), (std::map<std::string, std::string>{
                              {"model", "a-model"}, {"seconds", "3"}, {"checkpoint", "ck"}}));
}

TEST(EvalReportTest, MergeRejectsMismatchedOrOverlappingShardsAndStaysUnchanged) {
  EvalReport report = FixtureReport();
  const std::string before = report.ToJson();

  EvalReport other_questions({"What digit is this?"});
  absl::Status st = report.Merge(other_questions);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("different questions")));

  EvalReport other_classes(kQuestions, 5);
  st = report.Merge(other_classes);
  EXPECT_THAT(std::string(st.message()), HasSubstr("10 and 5 classes"));

  EvalReport overlap(kQuestions);
  overlap.Add(Sample(0, 100, 3, "3"));
  overlap.Add(Sample(1, 4, 4, "4"));  // also in the fixture
  st = report.Merge(overlap);
  EXPECT_THAT(st,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sample 4 of question 1")));

  EXPECT_EQ(report.ToJson(), before);
}

TEST(EvalReportTest, JsonHoldsTheStatisticsAndEverySample) {
  json j = json::parse(FixtureReport().ToJson());
  EXPECT_EQ(j["format"], "llava-mnist eval report");
  EXPECT_EQ(j["metadata"]["model"], "llama-3.1-8b");
  EXPECT_EQ(j["questions"], json(kQuestions));
  EXPECT_EQ(j["totals"]["samples"], 12);
  EXPECT_EQ(j["totals"]["correct"], 8);
  EXPECT_EQ(j["totals"]["no_answer"], 1);
  EXPECT_DOUBLE_EQ(j["totals"]["accuracy"].get<double>(), 8.0 / 12.0);
  EXPECT_DOUBLE_EQ(j["per_question"][1]["accuracy"].get<double>(), 5.0 / 6.0);
  EXPECT_EQ(j["per_question"][0]["question"], kQuestions[0]);
  EXPECT_EQ(j["per_class"][1]["samples"], 4);
  EXPECT_EQ(j["per_class"][1]["correct"], 2);
  EXPECT_EQ(j["confusion"]["columns"].size(), 11u);
  EXPECT_EQ(j["confusion"]["columns"][10], "none");
  EXPECT_EQ(j["confusion"]["counts"][0][8], 1);
  EXPECT_EQ(j["confusion"]["counts"][1][10], 1);
  ASSERT_EQ(j["samples"].size(), 12u);
  EXPECT_EQ(j["samples"][3]["answer"], "I cannot tell");
  EXPECT_TRUE(j["samples"][3]["predicted"].is_null());
  EXPECT_EQ(j["samples"][5]["predicted"], 10);
  EXPECT_EQ(j["samples"][9]["question"], 1);
  EXPECT_EQ(j["samples"][9]["index"], 3);
}

TEST(EvalReportTest, JsonKeyOrderIsFixed) {
  std::string text = FixtureReport().ToJson();
  std::vector<size_t> pos;
  for (const char* key : {"format", "version", "metadata", "num_classes", "questions", "totals",
                          "per_question", "per_class", "confusion", "samples"}) {
    pos.push_back(text.find(std::string("\n  \"") + key + "\": "));  // top-level keys only
    EXPECT_NE(pos.back(), std::string::npos) << key;
  }
  EXPECT_TRUE(std::is_sorted(pos.begin(), pos.end()));
  // One sample per line.
  EXPECT_THAT(text, HasSubstr("\n    {\"index\":0,\"question\":0,\"label\":7,\"predicted\":7,"
                              "\"answer\":\"The digit is 7.\"},\n"));
}

TEST(EvalReportTest, JsonRoundTripKeepsEverything) {
  EvalReport report = FixtureReport();
  report.Add(Sample(1, 9, 3, "quote \" backslash \\ newline \n tab \t and \xC3\xA9"));
  auto back = EvalReport::FromJson(report.ToJson(), "report.json");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->ToJson(), report.ToJson());
  EXPECT_EQ(back->metadata(), report.metadata());
  EXPECT_EQ(back->questions(), report.questions());
  ASSERT_EQ(back->samples().size(), report.samples().size());
  for (size_t i = 0; i < report.samples().size(); ++i) {
    EXPECT_EQ(back->samples()[i].answer, report.samples()[i].answer);
    EXPECT_EQ(back->samples()[i].predicted, report.samples()[i].predicted);
    EXPECT_EQ(back->samples()[i].label, report.samples()[i].label);
  }
  EXPECT_EQ(back->Confusion(), report.Confusion());
}

// The robustness views (eval --robustness): per-question tallies of the same questions on
// transformed digits, in the JSON (before the samples), read back, summed over shards,
// and in the table.
TEST(EvalReportTest, RobustnessViewsTallyRoundTripMergeAndShow) {
  EvalReport report = FixtureReport();
  ASSERT_THAT(report.AddView("shift 2 px", FixtureReport()), IsOk());  // q0 3/6, q1 5/6
  ASSERT_EQ(report.views().size(), 1u);
  const EvalView& v = report.views()[0];
  EXPECT_EQ(v.name, "shift 2 px");
  EXPECT_EQ(v.correct, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(v.total, (std::vector<int64_t>{6, 6}));
  EXPECT_DOUBLE_EQ(v.Accuracy(), 8.0 / 12.0);
  EXPECT_DOUBLE_EQ(v.QuestionAccuracy(0), 0.5);

  const std::string text = report.ToJson();
  const size_t robustness = text.find("\n  \"robustness\": ");
  ASSERT_NE(robustness, std::string::npos);
  EXPECT_LT(text.find("\n  \"confusion\": "), robustness);
  EXPECT_LT(robustness, text.find("\n  \"samples\": "));
  auto j = json::parse(text);
  EXPECT_EQ(j["robustness"][0]["view"], "shift 2 px");
  EXPECT_EQ(j["robustness"][0]["correct"], 8);
  EXPECT_EQ(j["robustness"][0]["per_question"][1]["accuracy"], 5.0 / 6.0);
  auto back = EvalReport::FromJson(text, "report.json");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->ToJson(), text);
  // A report without views keeps its JSON as before.
  EXPECT_EQ(FixtureReport().ToJson().find("robustness"), std::string::npos);

  // Two shards' views add up.
  EvalReport a(kQuestions), b(kQuestions);
  for (EvalSample& s : FixtureSamples()) (s.index < 3 ? a : b).Add(std::move(s));
  EvalReport va(kQuestions), vb(kQuestions);
  for (EvalSample& s : FixtureSamples()) (s.index < 3 ? va : vb).Add(std::move(s));
  ASSERT_THAT(a.AddView("shift 2 px", va), IsOk());
  ASSERT_THAT(b.AddView("shift 2 px", vb), IsOk());
  ASSERT_THAT(a.Merge(b), IsOk());
  ASSERT_EQ(a.views().size(), 1u);
  EXPECT_EQ(a.views()[0].correct, v.correct);
  EXPECT_EQ(a.views()[0].total, v.total);

  const std::string table = report.ToTable();
  EXPECT_THAT(table, HasSubstr("Robustness"));
  EXPECT_THAT(table, HasSubstr("shift 2 px"));
  EXPECT_THAT(table, HasSubstr("83.33%"));
  EXPECT_FALSE(report.AddView("other", EvalReport({"Another question?"})).ok());
}

TEST(EvalReportTest, InvalidUtf8AnswerIsReplacedNotThrown) {
  EvalReport report(kQuestions);
  report.Add(Sample(0, 0, 7, "The digit is 7 \xE2\x80"));  // cut inside a character
  std::string text = report.ToJson();
  auto back = EvalReport::FromJson(text, "r.json");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->samples()[0].answer, "The digit is 7 \xEF\xBF\xBD");
  EXPECT_EQ(back->samples()[0].predicted, 7);
}

// FromJson of the fixture's JSON after `edit`; expects an error naming file and field.
std::string FromJsonError(const std::function<void(json&)>& edit) {
  json j = json::parse(FixtureReport().ToJson());
  edit(j);
  auto got = EvalReport::FromJson(j.dump(), "shard3.json");
  EXPECT_FALSE(got.ok());
  if (got.ok()) return "";
  std::string msg(got.status().message());
  EXPECT_THAT(msg, HasSubstr("shard3.json"));
  return msg;
}

TEST(EvalReportTest, FromJsonRejectsMalformedFilesNamingTheField) {
  auto not_json = EvalReport::FromJson("{\"format\": ", "broken.json");
  EXPECT_THAT(std::string(not_json.status().message()),
              HasSubstr("broken.json: (file): not valid JSON"));
  EXPECT_THAT(std::string(EvalReport::FromJson("[1]", "a.json").status().message()),
              HasSubstr("expected a JSON object"));

  EXPECT_THAT(FromJsonError([](json& j) { j["format"] = "other"; }), HasSubstr("format:"));
  EXPECT_THAT(FromJsonError([](json& j) { j["version"] = 2; }),
              HasSubstr("version: this build reads version 1, got 2"));
  EXPECT_THAT(FromJsonError([](json& j) { j["num_classes"] = 0; }), HasSubstr("num_classes:"));
  EXPECT_THAT(FromJsonError([](json& j) { j["questions"][1] = 3; }),
              HasSubstr("questions[1]: expected a string"));
  EXPECT_THAT(FromJsonError([](json& j) { j["metadata"]["model"] = 8; }),
              HasSubstr("metadata.model: expected a string"));
  EXPECT_THAT(FromJsonError([](json& j) { j.erase("samples"); }), HasSubstr("samples: missing"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"] = 5; }),
              HasSubstr("samples: expected an array"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][1] = "x"; }),
              HasSubstr("samples[1]: expected an object"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][1]["label"] = 10; }),
              HasSubstr("samples[1].label: expected an integer in [0, 9], got 10"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][2]["question"] = 2; }),
              HasSubstr("samples[2].question: expected an integer in [0, 1], got 2"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][2]["index"] = -1; }),
              HasSubstr("samples[2].index"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][2]["index"] = 1.5; }),
              HasSubstr("samples[2].index: expected an integer"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][0].erase("answer"); }),
              HasSubstr("samples[0].answer: missing"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][0]["answer"] = 7; }),
              HasSubstr("samples[0].answer: expected a string"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][0]["predicted"] = "7"; }),
              HasSubstr("samples[0].predicted: expected an integer"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"][4]["index"] = 3; }),
              HasSubstr("samples: sample 3 of question 0 appears twice"));
  EXPECT_THAT(FromJsonError([](json& j) { j["totals"]["correct"] = 9; }),
              HasSubstr("totals.correct: says 9 but the samples give 8"));
  EXPECT_THAT(FromJsonError([](json& j) { j["samples"].erase(0); }),
              HasSubstr("totals.samples: says 12 but the samples give 11"));
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// The lines of `table` after the line `title` up to the next empty line.
std::vector<std::string> Section(const std::string& table, const std::string& title) {
  std::vector<std::string> lines = Lines(table), out;
  auto it = std::find(lines.begin(), lines.end(), title);
  EXPECT_NE(it, lines.end()) << title;
  if (it == lines.end()) return out;
  for (++it; it != lines.end() && !it->empty(); ++it) out.push_back(*it);
  return out;
}

TEST(EvalReportTest, TableShowsAlignedStatisticsAndSampleAnswers) {
  const std::string table = FixtureReport().ToTable(/*max_samples=*/2);
  EXPECT_THAT(table, HasSubstr("Eval: accuracy 66.67% (8/12 correct), 1 without a number, "
                               "2 question(s)\n"));
  EXPECT_THAT(table, HasSubstr("  model: llama-3.1-8b\n"));

  std::vector<std::string> per_question = Section(table, "Per question");
  ASSERT_EQ(per_question.size(), 3u);
  EXPECT_THAT(Words(per_question[1]),
              ElementsAre("q0", "What", "digit", "is", "this?", "3", "6", "50.00%"));
  EXPECT_THAT(Words(per_question[2]).back(), "83.33%");

  std::vector<std::string> confusion =
      Section(table, "Confusion (rows: label, columns: predicted)");
  ASSERT_EQ(confusion.size(), 11u);
  EXPECT_THAT(Words(confusion[0]),
              ElementsAre("label\\pred", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "none"));
  EXPECT_THAT(Words(confusion[2]),
              ElementsAre("1", "0", "2", "0", "0", "0", "0", "0", "1", "0", "0", "1"));
  // Right-aligned columns: every row ends at the same place.
  for (const std::string& line : confusion) EXPECT_EQ(line.size(), confusion[0].size()) << line;

  std::vector<std::string> per_class = Section(table, "Per class");
  ASSERT_EQ(per_class.size(), 11u);
  EXPECT_THAT(Words(per_class[2]), ElementsAre("1", "2", "4", "50.00%"));
  for (const std::string& line : per_class) EXPECT_EQ(line.size(), per_class[0].size()) << line;

  std::vector<std::string> samples = Section(table, "Sample answers");
  ASSERT_EQ(samples.size(), 4u);  // two per question
  EXPECT_THAT(samples[0], HasSubstr("q0 #0"));
  EXPECT_THAT(samples[0], HasSubstr("\"The digit is 7.\""));
  EXPECT_THAT(samples[2], HasSubstr("q1 #0"));
  EXPECT_THAT(samples[2], HasSubstr("\"seven\""));

  std::vector<std::string> wrong = Section(table, "Wrong answers (4 in all)");
  ASSERT_EQ(wrong.size(), 2u);
  EXPECT_THAT(wrong[0], HasSubstr("q0 #2"));
  EXPECT_THAT(wrong[0], HasSubstr("WRONG"));
  EXPECT_THAT(wrong[1], HasSubstr("predicted none"));
}

TEST(EvalReportTest, TableEscapesAndShortensAnswers) {
  EvalReport report(kQuestions);
  report.Add(Sample(0, 0, 1, "line one\nline two \x01 " + std::string(200, 'x')));
  std::string table = report.ToTable();
  EXPECT_THAT(table, HasSubstr("\"line one\\nline two \\x01 xxx"));
  EXPECT_THAT(table, HasSubstr("xxx...\""));
  EXPECT_THAT(table, ::testing::Not(HasSubstr(std::string(100, 'x'))));
}

TEST(EvalReportDeathTest, AddingASampleTwiceIsACallerBug) {
  EvalReport report(kQuestions);
  report.Add(Sample(0, 1, 1, "1"));
  EXPECT_DEATH(report.Add(Sample(0, 1, 1, "1")), "added twice");
  EXPECT_DEATH(report.Add(Sample(2, 0, 1, "1")), "question 2 of 2");
  EXPECT_DEATH(report.Add(Sample(0, 5, 10, "1")), "label 10");
}

}  // namespace
}  // namespace llava
