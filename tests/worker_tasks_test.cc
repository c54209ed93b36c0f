// A worker's tasks (worker_tasks.h). The eval warm-up: with the defaults an eval job gets,
// it answers digits through the frozen model on the model's device. A training task, on
// an in-memory coordinator (tests/fake_coordinator.h) and a fake group
// (tests/fake_collective.h), with no processes and no sockets: it trains its steps and
// uploads its checkpoints, and each way it can fail ends it as the coordinator needs to
// know: a collective error mid-step (retryable, the error named), a refused upload (the
// coordinator's reason), gradients that are not finite (not retryable: the same step would
// fail again), an abort (at the next step boundary, or out of a hung collective).
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "common/data_plan.h"
#include "common/job_spec.h"
#include "common/llama_weights.h"
#include "common/mnist_idx.h"
#include "common/tokenizer.h"
#include "common/train_checkpoint.h"
#include "tests/fake_collective.h"
#include "tests/fake_coordinator.h"
#include "tests/status_matchers.h"
#include "tests/synthetic_digits.h"
#include "tests/test_util.h"
#include "worker/worker_tasks.h"

namespace llava {
namespace {

using ::llava::testing::IsOk;
using ::llava::testing::StatusIs;

TEST(WorkerWarmUpTest, AnswersWithTheDefaultsOfAnEvalJob) {
  auto tokenizer = Tokenizer::Load(testing::TokenizerPath());
  ASSERT_THAT(tokenizer, IsOk());
  auto model = LoadLlama("synthetic:tiny", ModelOptions());
  ASSERT_THAT(model, IsOk());
  MnistSet digits;
  digits.pixels.assign(3 * digits.image_size(), 128);
  digits.labels = {1, 2, 3};
  WorkerResources r{model->get(), &*tokenizer, &digits, &digits, "synthetic:tiny"};
  EXPECT_THAT(WarmUpEval(r), IsOk());

  MnistSet none;
  r.test = &none;
  EXPECT_THAT(WarmUpEval(r), StatusIs(absl::StatusCode::kInvalidArgument));
}

using testing::FakeCollective;
using testing::FakeCoordinator;
using Call = FakeCoordinator::Call;

using testing::SyntheticDigits;

// The rank's shards as the coordinator's scheduler cuts them from the job's data plan.
FakeCoordinator::ShardSource PlanShards(const v1::TrainSpec& spec, int64_t world) {
  DataPlanConfig c;
  c.num_samples = spec.train_digits();
  c.global_batch = *GlobalBatch(spec, spec.world_size());
  c.epochs = spec.epochs();
  c.max_steps = spec.max_steps();
  c.seed = spec.seed();
  c.num_questions = std::max(1, spec.questions_size());
  c.num_answer_templates = std::max(1, spec.answer_templates_size());
  auto plan = std::make_shared<DataPlan>(c);
  return [plan, world](const v1::TaskRef& ref, int64_t epoch) -> absl::StatusOr<v1::Shard> {
    v1::Shard shard;
    shard.set_epoch(epoch);
    const int64_t first = epoch * plan->steps_per_epoch();
    const int64_t last = std::min(plan->total_steps(), first + plan->steps_per_epoch());
    for (int64_t step = first; step < last; ++step) {
      v1::StepShare* share = shard.add_steps();
      share->set_step(step);
      for (const PlannedSample& s : plan->RankSamples(step, ref.rank(), world)) {
        share->add_index(s.index);
        share->add_question(s.question);
        share->add_answer_template(s.answer_template);
      }
    }
    return shard;
  };
}

// synthetic:tiny (the real Llama 3.1 vocabulary, random weights: all that the task's
// mechanics need, and no file to load) on one thread.
class TrainTaskTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    auto tokenizer = Tokenizer::Load(testing::TokenizerPath());
    ASSERT_THAT(tokenizer, IsOk());
    tokenizer_ = new Tokenizer(std::move(*tokenizer));
    auto model = LoadLlama("synthetic:tiny", ModelOptions());
    ASSERT_THAT(model, IsOk());
    model_ = model->release();
    digits_ = new MnistSet(SyntheticDigits(16));
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete model_;
    delete digits_;
  }

  // A resolved training task of `steps` steps of 2 digits, a checkpoint every `every`.
  v1::Task Task(int64_t steps, int64_t every) {
    v1::Task task;
    task.mutable_ref()->set_job_id("train-000001");
    task.mutable_ref()->set_attempt(1);
    task.mutable_ref()->set_rank(0);
    v1::TrainTask* t = task.mutable_train();
    v1::TrainSpec* spec = t->mutable_spec();
    spec->set_batch_size(2);
    spec->set_train_digits(16);
    spec->set_max_steps(steps);
    spec->set_checkpoint_every_steps(every);
    EXPECT_THAT(ResolveTrainSpec(spec), IsOk());
    t->set_world_size(1);
    t->set_rendezvous_prefix("train-000001/attempt-1/");
    t->set_collective_timeout_ms(5000);
    coordinator_.SetShards(PlanShards(*spec, 1));
    // The fake coordinator checks the session an upload speaks for.
    v1::WorkerInfo info;
    info.set_worker_id("worker-a");
    auto registered = coordinator_.Register(info);
    EXPECT_THAT(registered, IsOk());
    coordinator_.SetSession("worker-a", registered->session_id());
    return task;
  }

  TaskOutcome Run(const v1::Task& task, FakeCollective* group = nullptr) {
    if (group == nullptr) group = &group_;
    TaskEnv env;
    env.client = &coordinator_;
    env.resources = WorkerResources{model_, tokenizer_, digits_, digits_, "synthetic:tiny"};
    env.abort = &abort_;
    env.make_collective = group->Factory();
    env.on_collective = [this](Collective* c) { attached_.push_back(c != nullptr); };
    env.on_step = [this](const v1::StepMetrics& m) { steps_.push_back(m); };
    env.on_eval_progress = [](int64_t) {};
    return RunTrainTask(task, env);
  }

  static Tokenizer* tokenizer_;
  static const LlamaModel* model_;
  static MnistSet* digits_;
  FakeCoordinator coordinator_;
  FakeCollective group_;
  std::atomic<bool> abort_{false};
  std::vector<bool> attached_;  // on_collective's calls: with a group (true), with null
  std::vector<v1::StepMetrics> steps_;
};

Tokenizer* TrainTaskTest::tokenizer_ = nullptr;
const LlamaModel* TrainTaskTest::model_ = nullptr;
MnistSet* TrainTaskTest::digits_ = nullptr;

TEST_F(TrainTaskTest, TrainsItsStepsOverTheGroupAndUploadsItsCheckpoints) {
  TaskOutcome out = Run(Task(/*steps=*/3, /*every=*/2));
  ASSERT_THAT(out.status, IsOk());
  EXPECT_EQ(out.step, 3);
  EXPECT_EQ(group_.all_reduces(), 3);
  ASSERT_EQ(group_.made().size(), 1u);
  EXPECT_EQ(group_.made()[0].world_size, 1);
  EXPECT_EQ(group_.made()[0].prefix, "train-000001/attempt-1/");
  EXPECT_EQ(attached_, (std::vector<bool>{true, false}));
  ASSERT_EQ(steps_.size(), 3u);
  for (size_t i = 0; i < steps_.size(); ++i) {
    EXPECT_EQ(steps_[i].step(), static_cast<int64_t>(i) + 1);
    EXPECT_TRUE(std::isfinite(steps_[i].loss()) && steps_[i].loss() > 0) << steps_[i].loss();
  }
  // Step 2's checkpoint, then the final one; the final one parses.
  const std::vector<v1::CheckpointHeader> uploads = coordinator_.uploads();
  ASSERT_EQ(uploads.size(), 2u);
  EXPECT_EQ(uploads[0].step(), 2);
  EXPECT_FALSE(uploads[0].final());
  EXPECT_EQ(uploads[1].step(), 3);
  EXPECT_TRUE(uploads[1].final());
  auto download = coordinator_.DownloadCheckpoint(uploads[1].checkpoint_id());
  ASSERT_THAT(download, IsOk());
  EXPECT_THAT(ParseTrainCheckpoint(download->bytes, "final"), IsOk());
}

// The summed gradients are divided by the group's summed token count: a group of two
// ranks holding the same share (the fake sums as two ranks would) takes exactly the step
// that one rank alone takes.
TEST_F(TrainTaskTest, TheSummedGradientIsNormalizedByTheGroupsTokens) {
  auto final_projector = [&](FakeCollective* group) {
    TaskOutcome out = Run(Task(/*steps=*/2, /*every=*/0), group);
    EXPECT_THAT(out.status, IsOk());
    auto download = coordinator_.DownloadCheckpoint("train-000001/step-2");
    EXPECT_THAT(download, IsOk());
    auto parsed = ParseTrainCheckpoint(download.ok() ? download->bytes : "", "final");
    EXPECT_THAT(parsed, IsOk());
    return parsed.ok() ? parsed->projector_tensors : std::vector<NamedTensor>();
  };
  const std::vector<NamedTensor> one = final_projector(&group_);
  const double loss_one = steps_.back().loss();
  FakeCollective two(/*world_size=*/2);
  const std::vector<NamedTensor> both = final_projector(&two);
  EXPECT_EQ(two.all_reduces(), 2);
  ASSERT_EQ(one.size(), both.size());
  ASSERT_FALSE(one.empty());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_TRUE(at::equal(one[i].tensor, both[i].tensor)) << one[i].name;
  }
  EXPECT_EQ(steps_.back().loss(), loss_one);
}

TEST_F(TrainTaskTest, ACollectiveErrorMidStepFailsTheTaskRetryablyNamingTheError) {
  group_.FailAllReduce(2, absl::UnavailableError("gloo: connection reset by peer (rank 1)"));
  TaskOutcome out = Run(Task(/*steps=*/3, /*every=*/0));
  EXPECT_TRUE(absl::IsUnavailable(out.status)) << out.status;
  EXPECT_NE(out.status.message().find("connection reset by peer (rank 1)"), std::string::npos)
      << out.status;
  EXPECT_TRUE(out.retryable);
  EXPECT_EQ(out.step, 1);  // step 1 was done; step 2 failed in its all-reduce
  EXPECT_EQ(steps_.size(), 1u);
  EXPECT_TRUE(coordinator_.uploads().empty());  // nothing of the failed attempt is kept
  EXPECT_EQ(attached_, (std::vector<bool>{true, false}));
}

TEST_F(TrainTaskTest, ARefusedUploadFailsTheTaskWithTheCoordinatorsReason) {
  coordinator_.FailNext(Call::kUpload,
                        absl::ResourceExhaustedError("checkpoint store: the disk is full"));
  TaskOutcome out = Run(Task(/*steps=*/3, /*every=*/2));
  EXPECT_TRUE(absl::IsResourceExhausted(out.status)) << out.status;
  EXPECT_NE(out.status.message().find("the disk is full"), std::string::npos) << out.status;
  EXPECT_TRUE(out.retryable);
  EXPECT_EQ(out.step, 2);  // the steps were done; their checkpoint was not kept
  EXPECT_EQ(group_.all_reduces(), 2);
  EXPECT_TRUE(coordinator_.uploads().empty());
}

TEST_F(TrainTaskTest, ARefusedFinalUploadFailsTheTaskAfterItsLastStep) {
  coordinator_.FailNext(Call::kUpload,
                        absl::PermissionDeniedError("job 'train-000001' attempt 1 is not running"));
  TaskOutcome out = Run(Task(/*steps=*/2, /*every=*/0));
  EXPECT_TRUE(absl::IsPermissionDenied(out.status)) << out.status;
  EXPECT_NE(out.status.message().find("is not running"), std::string::npos) << out.status;
  EXPECT_EQ(out.step, 2);
  EXPECT_EQ(coordinator_.count(Call::kUpload), 1);
}

// The summed gradients are not finite (a rank's overflowed): without loss scaling (a
// float32 model) the step fails, not retryable, since the same step from the same
// checkpoint would fail the same way.
TEST_F(TrainTaskTest, NonFiniteGradientsFailTheStepNotRetryably) {
  group_.PoisonAllReduce(2);
  TaskOutcome out = Run(Task(/*steps=*/3, /*every=*/0));
  EXPECT_FALSE(out.status.ok());
  EXPECT_NE(out.status.message().find("not finite"), std::string::npos) << out.status;
  EXPECT_FALSE(out.retryable);
  EXPECT_EQ(out.step, 1);
  EXPECT_TRUE(coordinator_.uploads().empty());
}

TEST_F(TrainTaskTest, AShardThatCannotBeFetchedFailsRetryably) {
  v1::Task task = Task(/*steps=*/2, /*every=*/0);
  coordinator_.FailNext(Call::kGetShard, absl::FailedPreconditionError(
                                             "attempt 1 is not a running training attempt"));
  TaskOutcome out = Run(task);
  EXPECT_TRUE(absl::IsFailedPrecondition(out.status)) << out.status;
  EXPECT_TRUE(out.retryable);
  EXPECT_EQ(out.step, 0);
  EXPECT_EQ(group_.all_reduces(), 0);
}

TEST_F(TrainTaskTest, AnAbortEndsTheTaskAtTheNextStepBoundary) {
  v1::Task task = Task(/*steps=*/3, /*every=*/0);
  abort_ = true;
  TaskOutcome out = Run(task);
  EXPECT_TRUE(absl::IsAborted(out.status)) << out.status;
  EXPECT_TRUE(out.retryable);
  EXPECT_EQ(out.step, 0);
  EXPECT_EQ(group_.all_reduces(), 0);
}

// A peer hangs: the all-reduce waits until the group is aborted (as the agent does when
// the coordinator says so), then the task ends at once.
TEST_F(TrainTaskTest, AnAbortedGroupLetsTheTaskOutOfAHungAllReduce) {
  v1::Task task = Task(/*steps=*/3, /*every=*/0);
  group_.HangAllReduce(2);
  std::thread coordinator_says_abort([&] {
    ASSERT_TRUE(testing::WaitUntil([&] { return group_.hanging(); }));
    abort_ = true;
    group_.Abort();
  });
  TaskOutcome out = Run(task);
  coordinator_says_abort.join();
  EXPECT_TRUE(absl::IsAborted(out.status)) << out.status;
  EXPECT_TRUE(out.retryable);
  EXPECT_EQ(out.step, 1);
}

}  // namespace
}  // namespace llava
