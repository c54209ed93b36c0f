// Which training samples each optimizer step sees, and with which question and answer
// phrasing: a pure function of (seed, number of digits, global batch), so that one
// process and any number of ranks see exactly the same samples in the same order.
// Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace llava {

struct DataPlanConfig {
  int64_t num_samples = 0;   // training digits used (the first N of the set)
  int64_t global_batch = 1;  // samples per optimizer step, over all ranks
  int64_t epochs = 1;
  int64_t max_steps = -1;  // -1: as many as the epochs give
  uint64_t seed = 0;
  bool shuffle = true;
  int64_t num_questions = 1;
  int64_t num_answer_templates = 1;

  // Every count positive and the step count representable: what DataPlan assumes (its
  // constructor CHECKs it), so that a plan built from client input is validated first.
  absl::Status Validate() const;
};

struct PlannedSample {
  int64_t index = 0;  // into the training set
  int64_t question = 0;
  int64_t answer_template = 0;
};

class DataPlan {
 public:
  // `config` must validate (a CHECK otherwise).
  explicit DataPlan(const DataPlanConfig& config);

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t EpochOfStep(int64_t step) const { return step / steps_per_epoch_; }

  // The samples of optimizer step `step`, all ranks together, in order (the last step of
  // an epoch may be short).
  std::vector<PlannedSample> StepSamples(int64_t step) const;
  // Rank `rank`'s contiguous share of StepSamples(step) (sizes differ by at most one).
  std::vector<PlannedSample> RankSamples(int64_t step, int64_t rank, int64_t world) const;
  // The key of training digit `index`'s augmentation in `epoch` (common/augment_config.h):
  // a function of the seed, the epoch and the index alone, so that the digit is
  // transformed the same way on any rank and in any batch, and differently each epoch.
  uint64_t AugmentKey(int64_t epoch, int64_t index) const;
  // Rank `rank`'s contiguous share of a step's samples already in hand.
  static std::vector<PlannedSample> RankShare(const std::vector<PlannedSample>& step_samples,
                                              int64_t rank, int64_t world);

 private:
  std::vector<int64_t> EpochOrder(int64_t epoch) const;
  DataPlanConfig config_;
  int64_t steps_per_epoch_ = 0;
  int64_t total_steps_ = 0;
};

}  // namespace llava
