#include "common/eval_report.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/answer_metric.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace llava {
namespace {

using ojson = nlohmann::ordered_json;

constexpr char kFormat[] = "llava-mnist eval report";
constexpr int kVersion = 1;
constexpr int64_t kMaxClasses = 1000;

bool KeyLess(const EvalSample& a, const EvalSample& b) {
  return std::tie(a.question, a.index) < std::tie(b.question, b.index);
}
bool SameKey(const EvalSample& a, const EvalSample& b) {
  return a.question == b.question && a.index == b.index;
}

struct Tally {
  int64_t correct = 0, total = 0;
  double Fraction() const {
    return total == 0 ? 0.0 : static_cast<double>(correct) / static_cast<double>(total);
  }
};

// Every statistic of a report, derived in one pass over its samples.
struct Summary {
  Tally all;
  int64_t no_answer = 0;
  std::vector<Tally> per_question, per_class;
  std::vector<std::vector<int64_t>> confusion;  // [label][predicted or none]
};

Summary Summarize(const EvalReport& report) {
  const int64_t classes = report.num_classes();
  Summary s;
  s.per_question.resize(report.questions().size());
  s.per_class.resize(static_cast<size_t>(classes));
  s.confusion.assign(static_cast<size_t>(classes), std::vector<int64_t>(classes + 1, 0));
  for (const EvalSample& sample : report.samples()) {
    const bool correct = AnswerIsCorrect(sample.predicted, sample.label);
    for (Tally* t : {&s.all, &s.per_question[sample.question], &s.per_class[sample.label]}) {
      t->total += 1;
      t->correct += correct ? 1 : 0;
    }
    if (!sample.predicted.has_value()) s.no_answer += 1;
    const bool in_classes =
        sample.predicted.has_value() && *sample.predicted >= 0 && *sample.predicted < classes;
    s.confusion[sample.label][in_classes ? *sample.predicted : classes] += 1;
  }
  return s;
}

// Adds a view's tallies to the view of the same name, or appends it.
void AddViewCounts(const EvalView& from, std::vector<EvalView>* views) {
  for (EvalView& v : *views) {
    if (v.name != from.name) continue;
    for (size_t q = 0; q < v.total.size(); ++q) {
      v.correct[q] += from.correct[q];
      v.total[q] += from.total[q];
    }
    return;
  }
  views->push_back(from);
}

ojson TallyJson(const Tally& t) {
  return ojson{{"samples", t.total}, {"correct", t.correct}, {"accuracy", t.Fraction()}};
}

ojson SampleJson(const EvalSample& s) {
  ojson j;
  j["index"] = s.index;
  j["question"] = s.question;
  j["label"] = s.label;
  j["predicted"] = s.predicted.has_value() ? ojson(*s.predicted) : ojson(nullptr);
  j["answer"] = s.answer;
  return j;
}

std::string Dump(const ojson& j, int indent) {
  // Generated answers can end inside a multi-byte character; replacing the bad bytes
  // keeps ToJson from throwing.
  return j.dump(indent, ' ', false, ojson::error_handler_t::replace);
}

// Indented like dump(2) down to the entries of top-level arrays and objects, which take
// one line each (a sample, a per-class row, a confusion row), so that a report with ten
// thousand samples stays readable and greppable.
void WriteReadable(const ojson& j, int depth, std::string* out) {
  const bool flat_array = j.is_array() && std::none_of(j.begin(), j.end(), [](const ojson& e) {
                            return e.is_structured();
                          });
  if (!j.is_structured() || j.empty() || flat_array || (j.is_object() && depth >= 2)) {
    absl::StrAppend(out, Dump(j, -1));
    return;
  }
  const std::string pad(2 * (depth + 1), ' ');
  absl::StrAppend(out, j.is_object() ? "{\n" : "[\n");
  size_t i = 0;
  for (auto it = j.begin(); it != j.end(); ++it, ++i) {
    absl::StrAppend(out, pad);
    if (j.is_object()) absl::StrAppend(out, Dump(ojson(it.key()), -1), ": ");
    WriteReadable(it.value(), depth + 1, out);
    absl::StrAppend(out, i + 1 < j.size() ? ",\n" : "\n");
  }
  absl::StrAppend(out, std::string(2 * depth, ' '), j.is_object() ? "}" : "]");
}

// ---- FromJson field readers: each error names the file and the field. ----

absl::Status FieldError(const std::string& source, const std::string& field,
                        const std::string& what) {
  return absl::DataLossError(absl::StrCat("eval report ", source, ": ", field, ": ", what));
}

absl::StatusOr<const ojson*> Member(const ojson& obj, const char* key, const std::string& where,
                                    const std::string& source) {
  std::string field = where.empty() ? key : absl::StrCat(where, ".", key);
  auto it = obj.find(key);
  if (it == obj.end()) return FieldError(source, field, "missing");
  return &*it;
}

absl::StatusOr<int64_t> IntMember(const ojson& obj, const char* key, int64_t lo, int64_t hi,
                                  const std::string& where, const std::string& source) {
  LM_ASSIGN_OR_RETURN(const ojson* v, Member(obj, key, where, source));
  std::string field = where.empty() ? key : absl::StrCat(where, ".", key);
  if (!v->is_number_integer()) return FieldError(source, field, "expected an integer");
  int64_t value = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{INT64_MAX}
                      ? INT64_MAX
                      : v->get<int64_t>();
  if (value < lo || value > hi) {
    return FieldError(source, field,
                      absl::StrCat("expected an integer in [", lo, ", ", hi, "], got ", value));
  }
  return value;
}

absl::StatusOr<EvalSample> SampleFromJson(const ojson& j, size_t i, int64_t num_questions,
                                          int64_t num_classes, const std::string& source) {
  const std::string where = absl::StrCat("samples[", i, "]");
  if (!j.is_object()) return FieldError(source, where, "expected an object");
  EvalSample s;
  LM_ASSIGN_OR_RETURN(s.index, IntMember(j, "index", 0, INT64_MAX, where, source));
  LM_ASSIGN_OR_RETURN(s.question, IntMember(j, "question", 0, num_questions - 1, where, source));
  LM_ASSIGN_OR_RETURN(s.label, IntMember(j, "label", 0, num_classes - 1, where, source));
  LM_ASSIGN_OR_RETURN(const ojson* answer, Member(j, "answer", where, source));
  if (!answer->is_string()) return FieldError(source, where + ".answer", "expected a string");
  s.answer = answer->get<std::string>();
  LM_ASSIGN_OR_RETURN(const ojson* predicted, Member(j, "predicted", where, source));
  if (!predicted->is_null()) {
    LM_ASSIGN_OR_RETURN(int64_t p, IntMember(j, "predicted", INT32_MIN, INT32_MAX, where, source));
    s.predicted = static_cast<int>(p);
  }
  return s;
}

absl::StatusOr<std::vector<std::string>> StringArray(const ojson& top, const char* key,
                                                     const std::string& source) {
  LM_ASSIGN_OR_RETURN(const ojson* arr, Member(top, key, "", source));
  if (!arr->is_array()) return FieldError(source, key, "expected an array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    if (!(*arr)[i].is_string()) {
      return FieldError(source, absl::StrCat(key, "[", i, "]"), "expected a string");
    }
    out.push_back((*arr)[i].get<std::string>());
  }
  return out;
}

absl::Status ReadMetadata(const ojson& top, const std::string& source,
                          std::map<std::string, std::string>* metadata) {
  auto it = top.find("metadata");
  if (it == top.end()) return absl::OkStatus();
  if (!it->is_object()) return FieldError(source, "metadata", "expected an object");
  for (const auto& [key, value] : it->items()) {
    if (!value.is_string()) {
      return FieldError(source, absl::StrCat("metadata.", key), "expected a string");
    }
    (*metadata)[key] = value.get<std::string>();
  }
  return absl::OkStatus();
}

// A hand-edited or truncated-then-repaired file shows up as totals that its own samples
// do not reproduce.
absl::Status CheckTotals(const ojson& top, const Summary& s, const std::string& source) {
  auto it = top.find("totals");
  if (it == top.end()) return absl::OkStatus();
  if (!it->is_object()) return FieldError(source, "totals", "expected an object");
  for (auto [key, want] : {std::pair<const char*, int64_t>{"samples", s.all.total},
                           std::pair<const char*, int64_t>{"correct", s.all.correct}}) {
    LM_ASSIGN_OR_RETURN(int64_t got, IntMember(*it, key, 0, INT64_MAX, "totals", source));
    if (got != want) {
      return FieldError(source, absl::StrCat("totals.", key),
                        absl::StrCat("says ", got, " but the samples give ", want));
    }
  }
  return absl::OkStatus();
}

// ---- ToTable ----

// Columns of text, the first left-aligned and the rest right-aligned.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line = "  ";
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      absl::StrAppend(&line, c == 0 ? "" : "  ", c == 0 ? row[c] + pad : pad + row[c]);
    }
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string Percent(const Tally& t) { return absl::StrFormat("%.2f%%", 100.0 * t.Fraction()); }

// Cuts `text` to at most `max_bytes` without splitting a UTF-8 character.
std::string Truncate(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "...";
}

// An answer on one terminal line: quoted, control characters escaped.
std::string QuoteAnswer(const std::string& answer) {
  std::string out = "\"";
  for (char c : Truncate(answer, 70)) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += absl::StrFormat("\\x%02x", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string SampleLine(const EvalSample& s) {
  const bool ok = AnswerIsCorrect(s.predicted, s.label);
  return absl::StrFormat("    q%d #%-6d label %d  predicted %-4s %-5s %s\n", s.question, s.index,
                         s.label, s.predicted ? absl::StrCat(*s.predicted) : "none",
                         ok ? "ok" : "WRONG", QuoteAnswer(s.answer));
}

}  // namespace

EvalReport::EvalReport(std::vector<std::string> questions, int64_t num_classes)
    : questions_(std::move(questions)), num_classes_(num_classes) {
  LM_CHECK(num_classes_ > 0 && num_classes_ <= kMaxClasses) << num_classes_;
}

void EvalReport::Add(EvalSample sample) {
  LM_CHECK(sample.question >= 0 && sample.question < static_cast<int64_t>(questions_.size()))
      << "question " << sample.question << " of " << questions_.size();
  LM_CHECK(sample.label >= 0 && sample.label < num_classes_) << "label " << sample.label;
  // Evals add samples in order, so the common case appends.
  auto pos = samples_.empty() || KeyLess(samples_.back(), sample)
                 ? samples_.end()
                 : std::lower_bound(samples_.begin(), samples_.end(), sample, KeyLess);
  LM_CHECK(pos == samples_.end() || !SameKey(*pos, sample))
      << "sample " << sample.index << " of question " << sample.question << " added twice";
  samples_.insert(pos, std::move(sample));
}

absl::Status EvalReport::Merge(const EvalReport& other) {
  if (other.questions_ != questions_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot merge eval reports with different questions: [\"",
                     absl::StrJoin(questions_, "\", \""), "\"] vs [\"",
                     absl::StrJoin(other.questions_, "\", \""), "\"]"));
  }
  if (other.num_classes_ != num_classes_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge eval reports with ", num_classes_,
                                                   " and ", other.num_classes_, " classes"));
  }
  std::vector<EvalSample> merged;
  merged.reserve(samples_.size() + other.samples_.size());
  std::merge(samples_.begin(), samples_.end(), other.samples_.begin(), other.samples_.end(),
             std::back_inserter(merged), KeyLess);
  auto dup = std::adjacent_find(merged.begin(), merged.end(), SameKey);
  if (dup != merged.end()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge eval reports: both hold sample ",
                                                   dup->index, " of question ", dup->question,
                                                   " (overlapping shards?)"));
  }
  samples_ = std::move(merged);
  for (const EvalView& v : other.views_) AddViewCounts(v, &views_);
  for (const auto& [key, value] : other.metadata_) metadata_.emplace(key, value);
  return absl::OkStatus();
}

double EvalView::Accuracy() const {
  int64_t c = 0, t = 0;
  for (size_t q = 0; q < total.size(); ++q) {
    c += correct[q];
    t += total[q];
  }
  return Tally{c, t}.Fraction();
}

double EvalView::QuestionAccuracy(int64_t q) const {
  LM_CHECK(q >= 0 && q < static_cast<int64_t>(total.size())) << q;
  return Tally{correct[q], total[q]}.Fraction();
}

absl::Status EvalReport::AddView(const std::string& name, const EvalReport& transformed) {
  if (transformed.questions_ != questions_) {
    return absl::InvalidArgumentError(
        absl::StrCat("robustness view '", name, "': its eval asked other questions"));
  }
  const Summary s = Summarize(transformed);
  EvalView view;
  view.name = name;
  for (const Tally& t : s.per_question) {
    view.correct.push_back(t.correct);
    view.total.push_back(t.total);
  }
  AddViewCounts(view, &views_);
  return absl::OkStatus();
}

double EvalReport::Accuracy() const { return Summarize(*this).all.Fraction(); }

int64_t EvalReport::NumCorrect() const { return Summarize(*this).all.correct; }

double EvalReport::QuestionAccuracy(int64_t q) const {
  LM_CHECK(q >= 0 && q < static_cast<int64_t>(questions_.size())) << q;
  return Summarize(*this).per_question[q].Fraction();
}

double EvalReport::ClassAccuracy(int64_t label) const {
  LM_CHECK(label >= 0 && label < num_classes_) << label;
  return Summarize(*this).per_class[label].Fraction();
}

std::vector<std::vector<int64_t>> EvalReport::Confusion() const {
  return Summarize(*this).confusion;
}

std::string EvalReport::ToJson() const {
  const Summary s = Summarize(*this);
  ojson top;
  top["format"] = kFormat;
  top["version"] = kVersion;
  top["metadata"] = ojson::object();
  for (const auto& [key, value] : metadata_) top["metadata"][key] = value;
  top["num_classes"] = num_classes_;
  top["questions"] = questions_;
  top["totals"] = TallyJson(s.all);
  top["totals"]["no_answer"] = s.no_answer;
  top["per_question"] = ojson::array();
  for (size_t q = 0; q < questions_.size(); ++q) {
    ojson j{{"question", questions_[q]}};
    j.update(TallyJson(s.per_question[q]));
    top["per_question"].push_back(j);
  }
  top["per_class"] = ojson::array();
  for (int64_t c = 0; c < num_classes_; ++c) {
    ojson j{{"label", c}};
    j.update(TallyJson(s.per_class[c]));
    top["per_class"].push_back(j);
  }
  ojson columns = ojson::array();
  for (int64_t c = 0; c < num_classes_; ++c) columns.push_back(absl::StrCat(c));
  columns.push_back("none");
  top["confusion"] = ojson{{"rows_are", "label"}, {"columns", columns}, {"counts", s.confusion}};
  if (!views_.empty()) {
    top["robustness"] = ojson::array();
    for (const EvalView& v : views_) {
      Tally all;
      ojson per_question = ojson::array();
      for (size_t q = 0; q < questions_.size(); ++q) {
        const Tally t{v.correct[q], v.total[q]};
        all.correct += t.correct;
        all.total += t.total;
        ojson j{{"question", questions_[q]}};
        j.update(TallyJson(t));
        per_question.push_back(j);
      }
      ojson j{{"view", v.name}};
      j.update(TallyJson(all));
      j["per_question"] = per_question;
      top["robustness"].push_back(j);
    }
  }
  top["samples"] = ojson::array();
  for (const EvalSample& sample : samples_) top["samples"].push_back(SampleJson(sample));
  std::string out;
  WriteReadable(top, 0, &out);
  return out + "\n";
}

absl::StatusOr<EvalReport> EvalReport::FromJson(const std::string& json,
                                                const std::string& source) {
  ojson top = ojson::parse(json, nullptr, /*allow_exceptions=*/false);
  if (top.is_discarded()) return FieldError(source, "(file)", "not valid JSON");
  if (!top.is_object()) return FieldError(source, "(file)", "expected a JSON object");
  LM_ASSIGN_OR_RETURN(const ojson* format, Member(top, "format", "", source));
  if (!format->is_string() || format->get<std::string>() != kFormat) {
    return FieldError(source, "format", absl::StrCat("expected \"", kFormat, "\""));
  }
  LM_ASSIGN_OR_RETURN(int64_t version, IntMember(top, "version", 0, INT64_MAX, "", source));
  if (version != kVersion) {
    return FieldError(source, "version",
                      absl::StrCat("this build reads version ", kVersion, ", got ", version));
  }
  LM_ASSIGN_OR_RETURN(int64_t num_classes,
                      IntMember(top, "num_classes", 1, kMaxClasses, "", source));
  LM_ASSIGN_OR_RETURN(std::vector<std::string> questions, StringArray(top, "questions", source));
  EvalReport report(std::move(questions), num_classes);
  LM_RETURN_IF_ERROR(ReadMetadata(top, source, &report.metadata_));

  LM_ASSIGN_OR_RETURN(const ojson* samples, Member(top, "samples", "", source));
  if (!samples->is_array()) return FieldError(source, "samples", "expected an array");
  const int64_t num_questions = static_cast<int64_t>(report.questions_.size());
  for (size_t i = 0; i < samples->size(); ++i) {
    LM_ASSIGN_OR_RETURN(EvalSample s,
                        SampleFromJson((*samples)[i], i, num_questions, num_classes, source));
    report.samples_.push_back(std::move(s));
  }
  std::stable_sort(report.samples_.begin(), report.samples_.end(), KeyLess);
  auto dup = std::adjacent_find(report.samples_.begin(), report.samples_.end(), SameKey);
  if (dup != report.samples_.end()) {
    return FieldError(
        source, "samples",
        absl::StrCat("sample ", dup->index, " of question ", dup->question, " appears twice"));
  }
  LM_RETURN_IF_ERROR(CheckTotals(top, Summarize(report), source));
  if (auto it = top.find("robustness"); it != top.end()) {
    if (!it->is_array()) return FieldError(source, "robustness", "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const ojson& v = (*it)[i];
      const std::string where = absl::StrCat("robustness[", i, "]");
      if (!v.is_object()) return FieldError(source, where, "expected an object");
      LM_ASSIGN_OR_RETURN(const ojson* name, Member(v, "view", where, source));
      if (!name->is_string()) return FieldError(source, where + ".view", "expected a string");
      LM_ASSIGN_OR_RETURN(const ojson* per_question, Member(v, "per_question", where, source));
      if (!per_question->is_array() || per_question->size() != report.questions_.size()) {
        return FieldError(source, where + ".per_question", "expected one entry per question");
      }
      EvalView view;
      view.name = name->get<std::string>();
      for (size_t q = 0; q < per_question->size(); ++q) {
        const std::string entry = absl::StrCat(where, ".per_question[", q, "]");
        if (!(*per_question)[q].is_object()) return FieldError(source, entry, "expected an object");
        LM_ASSIGN_OR_RETURN(int64_t total,
                            IntMember((*per_question)[q], "samples", 0, INT64_MAX, entry, source));
        LM_ASSIGN_OR_RETURN(int64_t correct,
                            IntMember((*per_question)[q], "correct", 0, total, entry, source));
        view.total.push_back(total);
        view.correct.push_back(correct);
      }
      AddViewCounts(view, &report.views_);
    }
  }
  return report;
}

std::string EvalReport::ToTable(int64_t max_samples) const {
  const Summary s = Summarize(*this);
  std::string out =
      absl::StrFormat("Eval: accuracy %s (%d/%d correct), %d without a number, %d question(s)\n",
                      Percent(s.all), s.all.correct, s.all.total, s.no_answer, questions_.size());
  for (const auto& [key, value] : metadata_) absl::StrAppend(&out, "  ", key, ": ", value, "\n");

  std::vector<std::vector<std::string>> rows = {{"question", "correct", "total", "accuracy"}};
  for (size_t q = 0; q < questions_.size(); ++q) {
    rows.push_back({absl::StrCat("q", q, " ", Truncate(questions_[q], 50)),
                    absl::StrCat(s.per_question[q].correct), absl::StrCat(s.per_question[q].total),
                    Percent(s.per_question[q])});
  }
  absl::StrAppend(&out, "\nPer question\n", FormatTable(rows));

  if (!views_.empty()) {
    rows = {{"view"}};
    for (size_t q = 0; q < questions_.size(); ++q) rows[0].push_back(absl::StrCat("q", q));
    rows[0].push_back("all");
    rows.push_back({"original"});
    for (size_t q = 0; q < questions_.size(); ++q)
      rows.back().push_back(Percent(s.per_question[q]));
    rows.back().push_back(Percent(s.all));
    for (const EvalView& v : views_) {
      rows.push_back({v.name});
      Tally all;
      for (size_t q = 0; q < questions_.size(); ++q) {
        const Tally t{v.correct[q], v.total[q]};
        all.correct += t.correct;
        all.total += t.total;
        rows.back().push_back(Percent(t));
      }
      rows.back().push_back(Percent(all));
    }
    absl::StrAppend(&out, "\nRobustness (accuracy on transformed test digits, per question)\n",
                    FormatTable(rows));
  }

  rows = {{"label", "correct", "total", "accuracy"}};
  for (int64_t c = 0; c < num_classes_; ++c) {
    rows.push_back({absl::StrCat(c), absl::StrCat(s.per_class[c].correct),
                    absl::StrCat(s.per_class[c].total), Percent(s.per_class[c])});
  }
  absl::StrAppend(&out, "\nPer class\n", FormatTable(rows));

  rows = {{"label\\pred"}};
  for (int64_t c = 0; c < num_classes_; ++c) rows[0].push_back(absl::StrCat(c));
  rows[0].push_back("none");
  for (int64_t c = 0; c < num_classes_; ++c) {
    rows.push_back({absl::StrCat(c)});
    for (int64_t n : s.confusion[c]) rows.back().push_back(absl::StrCat(n));
  }
  absl::StrAppend(&out, "\nConfusion (rows: label, columns: predicted)\n", FormatTable(rows));

  std::vector<int64_t> shown(questions_.size(), 0);
  absl::StrAppend(&out, "\nSample answers\n");
  for (const EvalSample& sample : samples_) {
    if (shown[sample.question]++ < max_samples) absl::StrAppend(&out, SampleLine(sample));
  }
  int64_t wrong = 0;
  absl::StrAppend(&out, "\nWrong answers (", s.all.total - s.all.correct, " in all)\n");
  for (const EvalSample& sample : samples_) {
    if (wrong >= max_samples) break;
    if (AnswerIsCorrect(sample.predicted, sample.label)) continue;
    absl::StrAppend(&out, SampleLine(sample));
    ++wrong;
  }
  return out;
}

}  // namespace llava
