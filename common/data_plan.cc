#include "common/data_plan.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace llava {
namespace {

// splitmix64: a tiny, well-mixed, portable hash, so the plan does not depend on the
// standard library's distributions (which differ between implementations).
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t Hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t salt) {
  return Mix(Mix(Mix(seed ^ salt) + a) + b);
}

}  // namespace

absl::Status DataPlanConfig::Validate() const {
  auto positive = [](const char* name, int64_t v) {
    return CheckPositive(absl::StrCat("data plan: ", name), v);
  };
  LM_RETURN_IF_ERROR(positive("the number of samples", num_samples));
  LM_RETURN_IF_ERROR(positive("the global batch", global_batch));
  LM_RETURN_IF_ERROR(positive("epochs", epochs));
  LM_RETURN_IF_ERROR(positive("the number of questions", num_questions));
  LM_RETURN_IF_ERROR(positive("the number of answer templates", num_answer_templates));
  if (max_steps < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data plan: max_steps must be >= 0 or -1, got ", max_steps));
  }
  const int64_t steps_per_epoch = num_samples / global_batch + (num_samples % global_batch != 0);
  int64_t total = 0;
  if (__builtin_mul_overflow(steps_per_epoch, epochs, &total)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data plan: ", steps_per_epoch, " steps per epoch x ", epochs, " epochs overflows"));
  }
  return absl::OkStatus();
}

DataPlan::DataPlan(const DataPlanConfig& config) : config_(config) {
  const absl::Status valid = config.Validate();
  LM_CHECK(valid.ok()) << valid;
  steps_per_epoch_ =
      config.num_samples / config.global_batch + (config.num_samples % config.global_batch != 0);
  total_steps_ = steps_per_epoch_ * config.epochs;
  if (config.max_steps >= 0) total_steps_ = std::min(total_steps_, config.max_steps);
}

std::vector<int64_t> DataPlan::EpochOrder(int64_t epoch) const {
  std::vector<int64_t> order(config_.num_samples);
  std::iota(order.begin(), order.end(), 0);
  if (!config_.shuffle) return order;
  // Fisher-Yates with a per-epoch stream.
  for (int64_t i = config_.num_samples - 1; i > 0; --i) {
    const uint64_t r = Hash(config_.seed, epoch, i, 0x5eed0001);
    std::swap(order[i], order[r % static_cast<uint64_t>(i + 1)]);
  }
  return order;
}

std::vector<PlannedSample> DataPlan::StepSamples(int64_t step) const {
  LM_CHECK(step >= 0 && step < total_steps_) << step;
  const int64_t epoch = EpochOfStep(step);
  const int64_t begin = (step % steps_per_epoch_) * config_.global_batch;
  const int64_t end = std::min(begin + config_.global_batch, config_.num_samples);
  // Recomputing the epoch's order per step costs O(N) integer work: negligible next to
  // a forward pass, and it keeps the plan stateless.
  const std::vector<int64_t> order = EpochOrder(epoch);
  std::vector<PlannedSample> out;
  for (int64_t pos = begin; pos < end; ++pos) {
    PlannedSample s;
    s.index = order[pos];
    s.question = static_cast<int64_t>(Hash(config_.seed, epoch, pos, 0x9e571011) %
                                      static_cast<uint64_t>(config_.num_questions));
    s.answer_template = static_cast<int64_t>(Hash(config_.seed, epoch, pos, 0xa2257e01) %
                                             static_cast<uint64_t>(config_.num_answer_templates));
    out.push_back(s);
  }
  return out;
}

uint64_t DataPlan::AugmentKey(int64_t epoch, int64_t index) const {
  return Hash(config_.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index), 0xa06e0001);
}

std::vector<PlannedSample> DataPlan::RankSamples(int64_t step, int64_t rank, int64_t world) const {
  return RankShare(StepSamples(step), rank, world);
}

std::vector<PlannedSample> DataPlan::RankShare(const std::vector<PlannedSample>& all, int64_t rank,
                                               int64_t world) {
  LM_CHECK(rank >= 0 && rank < world);
  const int64_t n = static_cast<int64_t>(all.size());
  const int64_t begin = n * rank / world, end = n * (rank + 1) / world;
  return std::vector<PlannedSample>(all.begin() + begin, all.begin() + end);
}

}  // namespace llava
