// EvalReport: per-sample eval results (one per test image and question) with the derived
// accuracies and confusion matrix, JSON and terminal-table output, and shard merging.
// Not thread-safe: one owner adds samples; merge shards after their workers are done.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

struct EvalSample {
  int64_t index = 0;             // sample index in the test set
  int64_t question = 0;          // index into EvalReport::questions()
  int64_t label = 0;             // 0 .. num_classes-1
  std::string answer;            // the generated text
  std::optional<int> predicted;  // ParseAnswerDigit(answer); nullopt: no number
};

// The tallies of one robustness view: the same questions asked about transformed test
// digits (e.g. "shift 2 px"), per question, without the samples.
struct EvalView {
  std::string name;
  std::vector<int64_t> correct, total;  // per question
  double Accuracy() const;              // over every question
  double QuestionAccuracy(int64_t q) const;
};

class EvalReport {
 public:
  explicit EvalReport(std::vector<std::string> questions, int64_t num_classes = 10);

  // Keeps samples() sorted by (question, index). A question or label out of range, or a
  // second sample with the same (question, index), is a caller bug and aborts.
  void Add(EvalSample sample);
  // Adds every sample of `other` (a shard of the same eval), so merging shards in any
  // order gives the report one process would have built. Metadata: entries of this
  // report win; keys only `other` has are copied. Errors (and leaves this report
  // unchanged) when questions or class counts differ or a (question, index) is in both.
  absl::Status Merge(const EvalReport& other);

  // Fractions in [0, 1]; 0 where there are no samples to count.
  double Accuracy() const;
  double QuestionAccuracy(int64_t q) const;
  double ClassAccuracy(int64_t label) const;
  int64_t NumSamples() const { return static_cast<int64_t>(samples_.size()); }
  int64_t NumCorrect() const;
  // [label][predicted]: columns 0..num_classes-1 are predictions, none_column() the rest.
  std::vector<std::vector<int64_t>> Confusion() const;

  // Adds the tallies of `transformed` (an eval of the same questions on transformed
  // digits) as the view `name`; a view of that name already here is added to (so shards
  // merge). Errors when the questions differ.
  absl::Status AddView(const std::string& name, const EvalReport& transformed);
  const std::vector<EvalView>& views() const { return views_; }
  // Free-form run description: model, checkpoint, images, seconds, images_per_s, ...
  std::map<std::string, std::string>& metadata() { return metadata_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const std::vector<std::string>& questions() const { return questions_; }
  int64_t num_classes() const { return num_classes_; }
  // Column of Confusion() that counts answers with no number or one outside the classes.
  int64_t none_column() const { return num_classes_; }
  const std::vector<EvalSample>& samples() const { return samples_; }

  // Pretty JSON with a fixed key order: metadata, questions, totals, per-question and
  // per-class accuracy, confusion, the robustness views (when there are any), then every
  // sample. Answers that are not valid UTF-8
  // are written with U+FFFD in place of the bad bytes.
  std::string ToJson() const;
  // Rebuilds a report from ToJson() output, rederiving every statistic from the samples
  // (and rejecting a file whose totals disagree with them). `source` names the file in
  // errors.
  static absl::StatusOr<EvalReport> FromJson(const std::string& json, const std::string& source);

  // Aligned text for a terminal: totals, per-question and per-class tables, confusion
  // matrix, then up to `max_samples` answers per question and `max_samples` wrong ones.
  std::string ToTable(int64_t max_samples = 5) const;

 private:
  std::vector<std::string> questions_;
  int64_t num_classes_;
  std::map<std::string, std::string> metadata_;
  std::vector<EvalSample> samples_;  // sorted by (question, index), keys unique
  std::vector<EvalView> views_;      // in the order added
};

}  // namespace llava
