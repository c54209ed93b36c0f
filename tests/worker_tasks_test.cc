// A worker's eval warm-up (worker_tasks.h): with the defaults an eval job gets, it answers
// digits through the frozen model on the model's device.
#include <gtest/gtest.h>

#include "common/llama_weights.h"
#include "common/mnist_idx.h"
#include "common/tokenizer.h"
#include "tests/test_util.h"
#include "worker/worker_tasks.h"

namespace llava {
namespace {

TEST(WorkerWarmUpTest, AnswersWithTheDefaultsOfAnEvalJob) {
  auto tokenizer = Tokenizer::Load(testing::TokenizerPath());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto model = LoadLlama("synthetic:tiny", ModelOptions());
  ASSERT_TRUE(model.ok()) << model.status();
  MnistSet digits;
  digits.pixels.assign(3 * digits.image_size(), 128);
  digits.labels = {1, 2, 3};
  WorkerResources r{model->get(), &*tokenizer, &digits, &digits, "synthetic:tiny"};
  EXPECT_TRUE(WarmUpEval(r).ok()) << WarmUpEval(r);

  MnistSet none;
  r.test = &none;
  EXPECT_EQ(WarmUpEval(r).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace llava
