// The distributed system end to end with real processes on loopback: a coordinator and
// CPU workers (Gloo) running the demo LM that setup builds. Checks that 2 workers train
// the same projector as one process with the same global batch, that an eval job's
// report equals the single-process eval, that checkpoints arrive byte-identical, that a
// SIGKILLed worker's job resumes from its checkpoint (or fails clearly in time), and
// that bad requests get clear status codes while the coordinator keeps serving.
#include <gtest/gtest.h>
#include <signal.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/eval_report.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/train_checkpoint.h"
#include "launch/process.h"
#include "tb_test_util.h"
#include "test_util.h"
#include "worker/coordinator_client.h"
#include "worker/evaluator.h"
#include "worker/trainer.h"

namespace llava {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

std::string DemoLm() { return testing::SourceDir() + "/data/models/demo-lm"; }

double SecondsSince(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}

class ClusterTest : public ::testing::Test {
 protected:
  struct Timing {
    int64_t worker_timeout_ms = 3000;
    int64_t restart_wait_ms = 60000;
    // Generous: on a loaded 2-core CI machine a rank may wait long for its peer's step.
    int64_t collective_timeout_ms = 15000;
  };

  // `state_dir` empty: under the test's directory. `listen` empty: any free port.
  void StartCoordinator(const Timing& t, std::string state_dir = "",
                        const std::string& listen = "") {
    if (dir_.empty()) dir_ = testing::MakeTempDir("cluster");
    if (state_dir.empty()) state_dir = dir_ + "/state";
    timing_ = t;
    state_dir_ = state_dir;
    std::remove((dir_ + "/port").c_str());
    auto c = ChildProcess::Spawn(
        {testing::BinaryPath(), "coordinator",
         "--listen=" + (listen.empty() ? "127.0.0.1:0" : listen), "--state_dir=" + state_dir,
         "--port_file=" + dir_ + "/port", "--heartbeat_interval_ms=100", "--tick_ms=20",
         absl::StrCat("--worker_timeout_ms=", t.worker_timeout_ms),
         absl::StrCat("--restart_wait_ms=", t.restart_wait_ms),
         absl::StrCat("--collective_timeout_ms=", t.collective_timeout_ms),
         "--metrics_listen=127.0.0.1:0"},
        dir_ + "/coordinator.log");
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = std::move(*c);
    const auto start = Steady::now();
    while (!FileExists(dir_ + "/port") && SecondsSince(start) < 30) {
      ASSERT_TRUE(coordinator_.Running()) << "see " << dir_ << "/coordinator.log";
      std::this_thread::sleep_for(milliseconds(20));
    }
    address_ = "127.0.0.1:" + *ReadFile(dir_ + "/port");
    ClientOptions o;
    o.address = address_;
    o.rpc_timeout = milliseconds(5000);
    client_ = std::make_unique<CoordinatorClient>(o);
  }

  void StartWorker(const std::string& id) {
    auto w = ChildProcess::Spawn(
        {testing::BinaryPath(), "worker", "--coordinator=" + address_, "--worker_id=" + id,
         "--model=" + DemoLm(), "--tokenizer=" + DemoLm() + "/tokenizer.json",
         "--data_dir=" + testing::SourceDir() + "/data/mnist", "--device=cpu", "--threads=1",
         "--rpc_timeout_ms=5000"},
        dir_ + "/" + id + ".log");
    ASSERT_TRUE(w.ok()) << w.status();
    workers_[id] = std::move(*w);
  }

  // The coordinator's metrics port, from its log.
  int MetricsPort() {
    const std::string marker = "coordinator: metrics on port ";
    const auto start = Steady::now();
    while (SecondsSince(start) < 30) {
      auto log = ReadFile(dir_ + "/coordinator.log");
      const size_t at = log.ok() ? log->find(marker) : std::string::npos;
      if (at != std::string::npos) return std::atoi(log->c_str() + at + marker.size());
      std::this_thread::sleep_for(milliseconds(20));
    }
    ADD_FAILURE() << "no metrics port in " << dir_ << "/coordinator.log";
    return 0;
  }

  // A counter of the coordinator's metrics page (0 while it has no sample).
  double Counter(int port, const std::string& series) {
    testing::HttpReply reply = testing::HttpRequest(port, "GET", "/metrics");
    EXPECT_EQ(reply.code, 200) << reply.body;
    const size_t at = reply.body.find("\n" + series + " ");
    return at == std::string::npos ? 0 : std::atof(reply.body.c_str() + at + series.size() + 2);
  }

  // Waits until `n` workers are alive and idle.
  void WaitIdleWorkers(int n, double timeout_s = 60) {
    const auto start = Steady::now();
    while (SecondsSince(start) < timeout_s) {
      auto list = client_->ListWorkers();
      int idle = 0;
      if (list.ok()) {
        for (const auto& w : list->workers())
          idle += (w.alive() && w.running().job_id().empty()) ? 1 : 0;
      }
      if (idle >= n) return;
      std::this_thread::sleep_for(milliseconds(50));
    }
    FAIL() << "fewer than " << n << " idle workers after " << timeout_s << " s; logs in " << dir_;
  }

  // Polls the job until `done` holds; fails the test after `timeout_s`.
  v1::JobStatus WaitJob(const std::string& id,
                        const std::function<bool(const v1::JobStatus&)>& done, double timeout_s) {
    const auto start = Steady::now();
    v1::JobStatus last;
    while (SecondsSince(start) < timeout_s) {
      auto s = client_->GetJob(id, false);
      if (s.ok()) {
        last = *s;
        if (done(last)) return last;
      }
      std::this_thread::sleep_for(milliseconds(30));
    }
    ADD_FAILURE() << "job " << id << " still " << last.ShortDebugString() << " after " << timeout_s
                  << " s; logs in " << dir_;
    return last;
  }
  static bool Ended(const v1::JobStatus& s) { return IsTerminal(s.state()); }
  void StartLongJob(const Timing& timing, std::string* id);
  // Waits until the job is still RUNNING and has stored a checkpoint at step >= 5.
  void WaitRunningWithACheckpoint(const std::string& id) {
    v1::JobStatus mid = WaitJob(
        id, [](const v1::JobStatus& s) { return s.latest_checkpoint_step() >= 5 || Ended(s); },
        120);
    ASSERT_EQ(mid.state(), v1::JOB_STATE_RUNNING)
        << "the job ended too soon: " << mid.ShortDebugString();
  }
  v1::JobStatus WaitRestarting(const std::string& id) {
    return WaitJob(
        id,
        [](const v1::JobStatus& s) { return s.state() == v1::JOB_STATE_RESTARTING || Ended(s); },
        30);
  }
  // Attempt 2 running (resumed), or the job's end.
  v1::JobStatus WaitSecondAttempt(const std::string& id) {
    return WaitJob(
        id,
        [](const v1::JobStatus& s) {
          return (s.state() == v1::JOB_STATE_RUNNING && s.attempt() == 2) || Ended(s);
        },
        60);
  }

  void TearDown() override {
    for (auto& [id, w] : workers_) w.Stop(milliseconds(3000));
    coordinator_.Stop(milliseconds(3000));
  }

  // A short linear-projector job over two phrasings.
  static v1::TrainSpec SmallJob() {
    v1::TrainSpec spec;
    spec.set_projector("linear");
    spec.set_lr(2e-3);
    spec.set_batch_size(4);
    spec.set_world_size(2);
    spec.set_train_digits(48);
    spec.set_seed(5);
    spec.set_checkpoint_every_steps(3);
    spec.add_questions("What digit is this?");
    spec.add_questions("What is this number?");
    return spec;
  }

  // The final projector of a finished training job, as eval jobs download it.
  std::string ProjectorSha256(const std::string& job_id) {
    auto slim = client_->DownloadCheckpoint(job_id, /*projector_only=*/true);
    EXPECT_TRUE(slim.ok()) << slim.status();
    return slim.ok() ? Sha256Hex(slim->bytes) : std::string();
  }

  std::string dir_, address_, state_dir_;
  Timing timing_;
  ChildProcess coordinator_;
  std::map<std::string, ChildProcess> workers_;
  std::unique_ptr<CoordinatorClient> client_;
};

// The coordinator's TensorBoard files of a training job hold every step of its history
// once (a redone step: the last value, as TensorBoard's restart rule keeps it), and a
// restart marker at the first redone step of each resumed attempt.
void ExpectTensorBoardMatchesHistory(const std::string& tb_dir, const v1::JobStatus& job) {
  const auto events = testing::ReadEventsDir(tb_dir);
  auto series = testing::ScalarSeries(events);
  std::map<int64_t, double> loss;
  for (const v1::StepMetrics& m : job.history()) loss[m.step()] = m.loss();
  ASSERT_EQ(series["train/loss"].size(), loss.size()) << tb_dir;
  for (const auto& [step, value] : loss) {
    EXPECT_NEAR(series["train/loss"][step], value, 1e-5 * std::max(1.0, std::abs(value)))
        << "step " << step;
    EXPECT_EQ(series["train/grad_norm"].count(step), 1u) << "step " << step;
  }
  int starts = 0;
  for (const auto& e : events) {
    if (!e.has_session_log()) continue;
    ++starts;
    EXPECT_EQ(e.step(), job.resumed_from_step() + 1);
  }
  EXPECT_EQ(starts, job.restarts() > 0 ? 1 : 0);
}

TEST_F(ClusterTest, TwoWorkersTrainAsOneProcessAndEvalMatchesTheSingleProcessReport) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(Timing()));
  StartWorker("worker-0");
  StartWorker("worker-1");
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(2));

  v1::SubmitJobRequest request;
  *request.mutable_train() = SmallJob();
  auto submitted = client_->Submit(request);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  v1::JobStatus done = WaitJob(submitted->job_id(), Ended, 180);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.total_steps(), 6);  // 48 digits / (4 x 2)
  EXPECT_EQ(done.latest_checkpoint_id(), submitted->job_id() + "/step-000006");

  // The fetched checkpoint is the stored file, byte for byte, and its checksum holds.
  auto fetched = client_->DownloadCheckpoint(submitted->job_id());
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  auto stored =
      ReadFile(dir_ + "/state/checkpoints/" + done.latest_checkpoint_id() + ".safetensors");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(fetched->bytes, *stored);
  EXPECT_EQ(fetched->header.sha256(), Sha256Hex(*stored));
  auto ckpt = ParseTrainCheckpoint(fetched->bytes, "fetched");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  // Without the optimizer state (what eval jobs download): the same projector, verified.
  auto slim = client_->DownloadCheckpoint(submitted->job_id(), /*projector_only=*/true);
  ASSERT_TRUE(slim.ok()) << slim.status();
  EXPECT_TRUE(slim->header.projector_only());
  EXPECT_LT(slim->bytes.size(), fetched->bytes.size());
  auto slim_ckpt = ParseTrainCheckpoint(slim->bytes, "fetched projector-only");
  ASSERT_TRUE(slim_ckpt.ok()) << slim_ckpt.status();
  EXPECT_TRUE(slim_ckpt->optimizer_state.empty());
  ASSERT_EQ(slim_ckpt->projector_tensors.size(), ckpt->projector_tensors.size());
  for (size_t i = 0; i < ckpt->projector_tensors.size(); ++i) {
    EXPECT_TRUE(
        at::equal(slim_ckpt->projector_tensors[i].tensor, ckpt->projector_tensors[i].tensor));
  }

  // One process with the same global batch (8), seed and phrasings.
  auto model = LoadLlama(DemoLm(), ModelOptions());
  ASSERT_TRUE(model.ok()) << model.status();
  auto tok = Tokenizer::Load(DemoLm() + "/tokenizer.json");
  ASSERT_TRUE(tok.ok());
  PromptConfig pc;
  pc.questions = {"What digit is this?", "What is this number?"};
  auto prompts = PromptBuilder::Create(*tok, pc);
  ASSERT_TRUE(prompts.ok());
  auto train = LoadMnistSplit(testing::SourceDir() + "/data/mnist", "train", 48);
  ASSERT_TRUE(train.ok());
  TrainConfig c;
  c.model_spec = DemoLm();
  c.projector.output_dim = (*model)->config.hidden_size;
  c.optimizer.lr = 2e-3;
  c.batch_size = 8;
  c.train_digits = 48;
  c.seed = 5;
  auto trainer = Trainer::Create(**model, ForwardOptions(), *prompts, *train, c, "");
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  while (!(*trainer)->done()) ASSERT_TRUE((*trainer)->TrainStep().ok());
  size_t i = 0;
  for (const auto& p : (*trainer)->projector()->named_parameters()) {
    ASSERT_LT(i, ckpt->projector_tensors.size());
    const double err = testing::RelError(ckpt->projector_tensors[i].tensor, p.value().detach());
    std::cout << "projector " << p.key() << ": 2 workers vs 1 process, rel. error " << err << "\n";
    EXPECT_LT(err, 1e-5) << p.key();
    ++i;
  }

  // The eval job's report equals the single-process eval of the same checkpoint.
  v1::SubmitJobRequest eval_request;
  eval_request.mutable_eval()->set_checkpoint(submitted->job_id());
  eval_request.mutable_eval()->set_eval_digits(30);
  auto eval_job = client_->Submit(eval_request);
  ASSERT_TRUE(eval_job.ok()) << eval_job.status();
  v1::JobStatus evaluated = WaitJob(eval_job->job_id(), Ended, 180);
  ASSERT_EQ(evaluated.state(), v1::JOB_STATE_SUCCEEDED) << evaluated.ShortDebugString();
  EXPECT_EQ(evaluated.worker_ids_size(), 2);
  auto merged = EvalReport::FromJson(evaluated.eval_report_json(), "eval job");
  ASSERT_TRUE(merged.ok()) << merged.status();

  auto projector = RestoreProjector(*ckpt, at::kCPU);
  ASSERT_TRUE(projector.ok());
  PromptConfig eval_pc;
  eval_pc.questions = {"What digit is this?", "What is this number?"};
  auto eval_prompts = PromptBuilder::Create(*tok, eval_pc);
  ASSERT_TRUE(eval_prompts.ok());
  auto test = LoadMnistSplit(testing::SourceDir() + "/data/mnist", "test", -1);
  ASSERT_TRUE(test.ok());
  EvalReport single(eval_pc.questions);
  EvalInputs inputs{model->get(), &*projector, &*eval_prompts, &*tok, &*test};
  ASSERT_TRUE(EvaluateRange(inputs, 0, 30, EvalConfig(), &single).ok());
  ASSERT_EQ(merged->NumSamples(), single.NumSamples());
  EXPECT_EQ(merged->NumSamples(), 60);
  for (int64_t k = 0; k < single.NumSamples(); ++k) {
    const EvalSample& a = merged->samples()[k];
    const EvalSample& b = single.samples()[k];
    EXPECT_EQ(a.index, b.index);
    EXPECT_EQ(a.question, b.question);
    EXPECT_EQ(a.label, b.label);
    EXPECT_EQ(a.answer, b.answer) << "sample " << k;
  }
  EXPECT_EQ(merged->Accuracy(), single.Accuracy());
  EXPECT_EQ(merged->Confusion(), single.Confusion());

  // TensorBoard: every step, and the eval at the step of the checkpoint it evaluated.
  auto with_history = client_->GetJob(submitted->job_id(), true);
  ASSERT_TRUE(with_history.ok()) << with_history.status();
  const std::string tb = dir_ + "/state/tensorboard/" + submitted->job_id();
  ExpectTensorBoardMatchesHistory(tb, *with_history);
  auto series = testing::ScalarSeries(testing::ReadEventsDir(tb));
  ASSERT_EQ(series["eval/accuracy"].size(), 1u);
  EXPECT_EQ(series["eval/accuracy"].begin()->first, 6);
  EXPECT_FLOAT_EQ(series["eval/accuracy"].begin()->second, static_cast<float>(merged->Accuracy()));
  EXPECT_EQ(series.count("eval/question/What is this number?"), 1u);
}

// Issue 16 item 5: an eval job over several workers takes the projector from the
// coordinator once, however many workers it has (rank 0 downloads it, the group's
// broadcast carries it to the others; counted from the coordinator's metrics), and its
// report is the one-worker report.
TEST_F(ClusterTest, AnEvalJobOverThreeWorkersDownloadsTheProjectorOnce) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(Timing()));
  const int metrics_port = MetricsPort();
  ASSERT_GT(metrics_port, 0);
  for (int i = 0; i < 3; ++i) StartWorker(absl::StrCat("worker-", i));
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(3));
  // Two checkpoints: step 1 and step 2.
  v1::SubmitJobRequest train;
  *train.mutable_train() = SmallJob();
  train.mutable_train()->set_world_size(1);
  train.mutable_train()->set_max_steps(2);
  train.mutable_train()->set_checkpoint_every_steps(1);
  auto trained = client_->Submit(train);
  ASSERT_TRUE(trained.ok()) << trained.status();
  ASSERT_EQ(WaitJob(trained->job_id(), Ended, 180).state(), v1::JOB_STATE_SUCCEEDED);
  const std::string step1 = trained->job_id() + "/step-000001",
                    step2 = trained->job_id() + "/step-000002";

  const std::string downloads =
      "llava_checkpoint_transfers_total{content=\"projector_only\",direction=\"download\"}";
  // Runs an eval job of 30 digits x 2 questions over `workers`; returns its report and
  // the projector downloads it caused.
  auto eval = [&](const std::string& checkpoint, int workers, EvalReport* report, double* fetched) {
    const double before = Counter(metrics_port, downloads);
    v1::SubmitJobRequest request;
    request.mutable_eval()->set_checkpoint(checkpoint);
    request.mutable_eval()->set_eval_digits(30);
    request.mutable_eval()->set_workers(workers);
    auto job = client_->Submit(request);
    ASSERT_TRUE(job.ok()) << job.status();
    v1::JobStatus done = WaitJob(job->job_id(), Ended, 180);
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
    EXPECT_EQ(done.worker_ids_size(), workers);
    *fetched = Counter(metrics_port, downloads) - before;
    auto parsed = EvalReport::FromJson(done.eval_report_json(), job->job_id());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    ASSERT_EQ(parsed->NumSamples(), 60);
    *report = std::move(*parsed);
  };
  auto expect_same_answers = [](const EvalReport& a, const EvalReport& b, const std::string& what) {
    ASSERT_EQ(a.NumSamples(), b.NumSamples()) << what;
    for (int64_t k = 0; k < a.NumSamples(); ++k) {
      EXPECT_EQ(a.samples()[k].index, b.samples()[k].index) << what << " sample " << k;
      EXPECT_EQ(a.samples()[k].question, b.samples()[k].question) << what << " sample " << k;
      EXPECT_EQ(a.samples()[k].answer, b.samples()[k].answer) << what << " sample " << k;
    }
    EXPECT_EQ(a.Confusion(), b.Confusion()) << what;
  };
  const std::vector<std::string> none;
  EvalReport one(none), three(none), again(none), other(none);
  double fetched = -1;
  // One worker downloads its own.
  ASSERT_NO_FATAL_FAILURE(eval(step2, 1, &one, &fetched));
  EXPECT_EQ(fetched, 1);
  // Three workers, a checkpoint none of them holds: one download.
  ASSERT_NO_FATAL_FAILURE(eval(step1, 3, &other, &fetched));
  EXPECT_EQ(fetched, 1);
  // Three workers, step 2 again (each now holds step 1): one download, the one-worker report.
  ASSERT_NO_FATAL_FAILURE(eval(step2, 3, &three, &fetched));
  EXPECT_EQ(fetched, 1);
  expect_same_answers(one, three, "3 workers against 1");
  // Each worker now holds step 2: nothing moves, the same report.
  ASSERT_NO_FATAL_FAILURE(eval(step2, 3, &again, &fetched));
  EXPECT_EQ(fetched, 0);
  expect_same_answers(one, again, "3 workers from their caches against 1");
}

// A job long enough to be killed in the middle: 2 ranks x batch 2, 120 steps,
// a checkpoint every 5.
v1::TrainSpec LongJob() {
  v1::TrainSpec spec;
  spec.set_batch_size(2);
  spec.set_world_size(2);
  spec.set_train_digits(2000);
  spec.set_max_steps(120);
  spec.set_checkpoint_every_steps(5);
  return spec;
}

// A coordinator, worker-0 and worker-1, and LongJob() submitted to them.
void ClusterTest::StartLongJob(const Timing& timing, std::string* id) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(timing));
  StartWorker("worker-0");
  StartWorker("worker-1");
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(2));
  v1::SubmitJobRequest request;
  *request.mutable_train() = LongJob();
  auto submitted = client_->Submit(request);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  *id = submitted->job_id();
}

TEST_F(ClusterTest, KilledWorkerJobResumesFromItsCheckpointWhenAWorkerReturns) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(StartLongJob(Timing(), &id));
  ASSERT_NO_FATAL_FAILURE(WaitRunningWithACheckpoint(id));

  workers_["worker-1"].Signal(SIGKILL);
  const auto killed = Steady::now();
  v1::JobStatus restarting = WaitRestarting(id);
  ASSERT_EQ(restarting.state(), v1::JOB_STATE_RESTARTING) << restarting.ShortDebugString();
  const double notice_s = SecondsSince(killed);
  // The survivor's collective fails as soon as the peer's sockets close, usually before
  // the heartbeat timeout: either cause is a clear reason.
  EXPECT_NE(restarting.reason().find("attempt 1 ended"), std::string::npos) << restarting.reason();
  std::cout << "reason: " << restarting.reason() << "\n";
  // The survivor leaves its collective (bounded by the collective timeout) and is idle.
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(1, 30));
  const double survivor_s = SecondsSince(killed);

  // The worker comes back under the same name: it registers again and the job resumes.
  workers_["worker-1"].Stop(milliseconds(100));
  StartWorker("worker-1");
  v1::JobStatus resumed = WaitSecondAttempt(id);
  const double resume_s = SecondsSince(killed);
  EXPECT_GE(resumed.resumed_from_step(), 5);
  EXPECT_EQ(resumed.resumed_from_step() % 5, 0);
  v1::JobStatus done = WaitJob(id, Ended, 240);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.restarts(), 1);
  EXPECT_EQ(done.attempt(), 2);
  EXPECT_EQ(done.latest_checkpoint_step(), 120);
  auto with_history = client_->GetJob(id, true);
  ASSERT_TRUE(with_history.ok()) << with_history.status();
  ExpectTensorBoardMatchesHistory(state_dir_ + "/tensorboard/" + id, *with_history);
  std::cout << "killed worker: noticed in " << notice_s << " s, survivor idle in " << survivor_s
            << " s, resumed (attempt 2, from step " << resumed.resumed_from_step() << ") in "
            << resume_s << " s\n";
}

// SIGTERM (Kubernetes stopping a pod) is not a crash: the worker leaves the coordinator,
// abandons its step and exits 0, and the job restarts at once instead of after the worker
// timeout (made long here so that only the leave can explain a quick restart).
TEST_F(ClusterTest, TerminatedWorkerLeavesAtOnceAndTheJobResumesWithoutIt) {
  Timing t;
  t.worker_timeout_ms = 60000;
  std::string id;
  ASSERT_NO_FATAL_FAILURE(StartLongJob(t, &id));
  ASSERT_NO_FATAL_FAILURE(WaitRunningWithACheckpoint(id));

  workers_["worker-1"].Signal(SIGTERM);
  const auto terminated = Steady::now();
  v1::JobStatus restarting = WaitRestarting(id);
  ASSERT_EQ(restarting.state(), v1::JOB_STATE_RESTARTING) << restarting.ShortDebugString();
  const double notice_s = SecondsSince(terminated);
  EXPECT_LT(notice_s, 20.0);  // far below the 60 s worker timeout
  EXPECT_NE(restarting.reason().find("it left (the worker is stopping"), std::string::npos)
      << restarting.reason();
  while (workers_["worker-1"].Running() && SecondsSince(terminated) < 30) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_FALSE(workers_["worker-1"].Running()) << "worker-1 ignored SIGTERM; see " << dir_;
  EXPECT_EQ(workers_["worker-1"].exit_status(), 0);
  const double exit_s = SecondsSince(terminated);
  auto list = client_->ListWorkers();
  ASSERT_TRUE(list.ok());
  for (const auto& w : list->workers()) EXPECT_NE(w.info().worker_id(), "worker-1") << "it left";

  StartWorker("worker-1");
  v1::JobStatus resumed = WaitSecondAttempt(id);
  EXPECT_EQ(resumed.attempt(), 2) << resumed.ShortDebugString();
  EXPECT_GE(resumed.resumed_from_step(), 5);
  std::cout << "SIGTERM: job restarting after " << notice_s << " s, worker exited 0 after "
            << exit_s << " s, resumed from step " << resumed.resumed_from_step() << "\n";
}

// Issue 15, finding 6: a SIGSTOPped rank is declared lost at the worker timeout, and its
// peer leaves the all-reduce then (the coordinator's abort shuts the group's sockets),
// not at the collective timeout.
TEST_F(ClusterTest, AStoppedRanksPeerLeavesTheCollectiveWhenTheRankIsDeclaredLost) {
  Timing t;
  t.collective_timeout_ms = 60000;  // the survivor must not wait for this
  std::string id;
  ASSERT_NO_FATAL_FAILURE(StartLongJob(t, &id));
  ASSERT_NO_FATAL_FAILURE(WaitRunningWithACheckpoint(id));
  workers_["worker-1"].Signal(SIGSTOP);
  const auto stopped = Steady::now();
  v1::JobStatus restarting = WaitRestarting(id);
  ASSERT_EQ(restarting.state(), v1::JOB_STATE_RESTARTING) << restarting.ShortDebugString();
  const double lost_s = SecondsSince(stopped);
  EXPECT_NE(restarting.reason().find("no heartbeat"), std::string::npos) << restarting.reason();
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(1, 30));
  const double survivor_s = SecondsSince(stopped);
  // The worker timeout (3 s), the abort's delivery and the survivor's next heartbeat, with
  // slack for a loaded 2-core machine: far below the 60 s collective timeout.
  EXPECT_LT(survivor_s, 3.0 + 5.0);
  workers_["worker-1"].Signal(SIGCONT);
  v1::JobStatus done = WaitJob(id, Ended, 300);
  // A continued worker that writes to its gone peer must not die of SIGPIPE (which leaves
  // no log line): it would never come back for the restart.
  EXPECT_TRUE(workers_["worker-1"].Running())
      << "worker-1 exited with status " << workers_["worker-1"].exit_status() << " (128 + signal)";
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.latest_checkpoint_step(), 120);
  std::cout << "SIGSTOP: rank declared lost after " << lost_s << " s, survivor idle after "
            << survivor_s << " s (worker timeout 3 s, collective timeout 60 s)\n";
}

// Issue 15, the chaos suite: the same 40-step job, fault-free and then under each fault in
// turn: the coordinator killed (-9) with the newest checkpoint damaged on disk while it is
// down (the restarted coordinator quarantines it and the job resumes from the one
// before), a worker killed (-9) and started again, a worker stopped (SIGSTOP) past the
// worker timeout and continued. Each job ends SUCCEEDED with a final projector
// byte-identical (SHA-256) to the fault-free run's.
TEST_F(ClusterTest, ChaosEveryFaultEndsWithTheFaultFreeProjector) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(Timing()));
  StartWorker("worker-0");
  StartWorker("worker-1");
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(2));
  v1::SubmitJobRequest request;
  *request.mutable_train() = LongJob();
  request.mutable_train()->set_max_steps(40);
  auto reference = client_->Submit(request);
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_EQ(WaitJob(reference->job_id(), Ended, 300).state(), v1::JOB_STATE_SUCCEEDED);
  const std::string want = ProjectorSha256(reference->job_id());
  ASSERT_FALSE(want.empty());

  // Runs the job, injects `fault` once it has a checkpoint at step >= 15, and checks the
  // end. `detect` is the time from the fault to the job's RESTARTING (or its new attempt).
  auto run = [&](const std::string& name, const std::function<void(const std::string& id)>& fault) {
    auto job = client_->Submit(request);
    ASSERT_TRUE(job.ok()) << job.status();
    const std::string id = job->job_id();
    v1::JobStatus mid = WaitJob(
        id, [](const v1::JobStatus& s) { return s.latest_checkpoint_step() >= 15 || Ended(s); },
        240);
    ASSERT_EQ(mid.state(), v1::JOB_STATE_RUNNING) << name << ": " << mid.ShortDebugString();
    const auto injected = Steady::now();
    fault(id);
    v1::JobStatus resumed = WaitJob(
        id,
        [](const v1::JobStatus& s) {
          return (s.state() == v1::JOB_STATE_RUNNING && s.attempt() >= 2) || Ended(s);
        },
        120);
    const double resume_s = SecondsSince(injected);
    v1::JobStatus done = WaitJob(id, Ended, 300);
    ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << name << ": " << done.ShortDebugString();
    const std::string got = ProjectorSha256(id);
    EXPECT_EQ(got, want) << name;
    std::cout << "chaos: " << name << ": resumed (attempt " << resumed.attempt() << ", from step "
              << resumed.resumed_from_step() << ") " << resume_s << " s after the fault; "
              << done.restarts() << " restart(s); projector "
              << (got == want ? "identical" : "DIFFERENT")
              << (done.quarantined_checkpoints_size() > 0
                      ? "; quarantined: " + done.quarantined_checkpoints(0)
                      : "")
              << "\n";
  };

  run("coordinator kill -9 + newest checkpoint damaged", [&](const std::string& id) {
    coordinator_.Signal(SIGKILL);
    coordinator_.Stop(milliseconds(100));
    int64_t newest = 0;
    for (const std::string& name : ListDir(state_dir_ + "/checkpoints/" + id)) {
      if (name.size() > 12 && name.substr(name.size() - 12) == ".safetensors") {
        newest = std::max<int64_t>(newest, std::atoll(name.c_str() + 5));
      }
    }
    ASSERT_GE(newest, 15);
    const std::string damaged = absl::StrCat(state_dir_, "/checkpoints/", id, "/step-",
                                             absl::Dec(newest, absl::kZeroPad6), ".safetensors");
    auto bytes = ReadFile(damaged);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    (*bytes)[bytes->size() / 2] ^= 0x5a;
    ASSERT_TRUE(WriteFileAtomic(damaged, *bytes).ok());
    ASSERT_NO_FATAL_FAILURE(StartCoordinator(timing_, state_dir_, address_));
    v1::JobStatus resumed = WaitSecondAttempt(id);
    EXPECT_EQ(resumed.resumed_from_step(), newest - 5) << resumed.ShortDebugString();
    ASSERT_EQ(resumed.quarantined_checkpoints_size(), 1) << resumed.ShortDebugString();
    EXPECT_NE(resumed.quarantined_checkpoints(0).find("differ from the SHA-256"),
              std::string::npos);
    EXPECT_TRUE(FileExists(damaged + ".quarantined"));
  });
  run("worker kill -9, started again", [&](const std::string&) {
    workers_["worker-1"].Signal(SIGKILL);
    workers_["worker-1"].Stop(milliseconds(100));
    StartWorker("worker-1");
  });
  run("worker SIGSTOP past the worker timeout, then SIGCONT", [&](const std::string& id) {
    workers_["worker-0"].Signal(SIGSTOP);
    v1::JobStatus lost = WaitRestarting(id);
    EXPECT_NE(lost.reason().find("no heartbeat"), std::string::npos) << lost.ShortDebugString();
    workers_["worker-0"].Signal(SIGCONT);
  });
}

// Issue 16 item 4 with real processes: an elastic job (world_size 2, min_world_size 1)
// loses worker-1 to SIGKILL, goes on alone from its checkpoint after restart_wait, grows
// back to 2 ranks at the next checkpoint once worker-1 is started again, and ends with the
// projector of the uninterrupted 2-rank run, within float rounding (the one rank sums the
// step's gradients in two forward passes where two ranks all-reduce them).
TEST_F(ClusterTest, AnElasticJobGoesOnWithFewerRanksAndGrowsBackToTheUninterruptedProjector) {
  Timing t;
  t.restart_wait_ms = 1500;
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(t));
  StartWorker("worker-0");
  StartWorker("worker-1");
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(2));
  v1::SubmitJobRequest request;
  *request.mutable_train() = LongJob();
  request.mutable_train()->set_max_steps(80);
  auto reference = client_->Submit(request);
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_EQ(WaitJob(reference->job_id(), Ended, 300).state(), v1::JOB_STATE_SUCCEEDED);

  request.mutable_train()->set_min_world_size(1);
  auto job = client_->Submit(request);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string id = job->job_id();
  ASSERT_NO_FATAL_FAILURE(WaitRunningWithACheckpoint(id));
  workers_["worker-1"].Signal(SIGKILL);
  workers_["worker-1"].Stop(milliseconds(100));
  const auto killed = Steady::now();
  v1::JobStatus alone = WaitJob(
      id,
      [](const v1::JobStatus& s) {
        return (s.state() == v1::JOB_STATE_RUNNING && s.attempt() == 2) || Ended(s);
      },
      120);
  const double shrink_s = SecondsSince(killed);
  ASSERT_EQ(alone.state(), v1::JOB_STATE_RUNNING) << alone.ShortDebugString();
  ASSERT_EQ(alone.worker_ids_size(), 1) << alone.ShortDebugString();
  EXPECT_EQ(alone.worker_ids(0), "worker-0");

  StartWorker("worker-1");
  const auto restarted = Steady::now();
  v1::JobStatus grown = WaitJob(
      id,
      [](const v1::JobStatus& s) {
        return (s.state() == v1::JOB_STATE_RUNNING && s.attempt() == 3) || Ended(s);
      },
      120);
  const double grow_s = SecondsSince(restarted);
  ASSERT_EQ(grown.state(), v1::JOB_STATE_RUNNING) << grown.ShortDebugString();
  EXPECT_EQ(grown.worker_ids_size(), 2);
  v1::JobStatus done = WaitJob(id, Ended, 300);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.restarts(), 1);
  ASSERT_EQ(done.attempts_size(), 3) << done.ShortDebugString();
  EXPECT_EQ(done.attempts(1).world_size(), 1);
  EXPECT_NE(done.attempts(1).why().find("shrunk to 1 of 2 ranks"), std::string::npos)
      << done.attempts(1).why();
  EXPECT_EQ(done.attempts(2).world_size(), 2);
  EXPECT_NE(done.attempts(2).why().find("grew from 1 to 2 ranks"), std::string::npos)
      << done.attempts(2).why();
  EXPECT_GT(done.attempts(2).from_step(), done.attempts(1).from_step());

  // The projectors agree to float rounding; a changed global batch or data order would
  // move them by orders of magnitude more.
  auto want = client_->DownloadCheckpoint(reference->job_id(), /*projector_only=*/true);
  auto got = client_->DownloadCheckpoint(id, /*projector_only=*/true);
  ASSERT_TRUE(want.ok() && got.ok());
  auto a = ParseTrainCheckpoint(std::move(want->bytes), "reference");
  auto b = ParseTrainCheckpoint(std::move(got->bytes), "elastic");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->projector_tensors.size(), b->projector_tensors.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < a->projector_tensors.size(); ++i) {
    const at::Tensor& x = a->projector_tensors[i].tensor;
    const at::Tensor& y = b->projector_tensors[i].tensor;
    ASSERT_EQ(x.sizes(), y.sizes());
    max_diff = std::max(max_diff, (x - y).abs().max().item<double>());
    max_abs = std::max(max_abs, x.abs().max().item<double>());
  }
  EXPECT_LE(max_diff, 1e-5 * std::max(max_abs, 1.0));
  std::cout << "elastic: shrank to 1 rank " << shrink_s << " s after the kill; grew back " << grow_s
            << " s after worker-1 started (from step " << done.attempts(2).from_step()
            << "); projector max |diff| " << max_diff << " (max |w| " << max_abs << ")\n";
}

// Issue 15, finding 3 and the chaos suite, on a real full disk (a small tmpfs; root):
// the checkpoint that does not fit fails the job at once, saying why, instead of
// retraining the same steps; a submission that cannot be recorded queues nothing; the
// coordinator keeps serving.
TEST_F(ClusterTest, FullDiskFailsTheJobOnceAndASubmissionThatCannotBeRecordedQueuesNothing) {
  dir_ = testing::MakeTempDir("cluster-full");
  const std::string state = dir_ + "/small";
  ASSERT_TRUE(MakeDirs(state).ok());
  if (geteuid() != 0 || std::system(("mount -t tmpfs -o size=3m tmpfs " + state).c_str()) != 0) {
    GTEST_SKIP() << "needs root and tmpfs (mount) to make a full disk: not run";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { std::system(("umount -l " + path).c_str()); }
  } unmount{state};
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(Timing(), state));
  StartWorker("worker-0");
  StartWorker("worker-1");
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(2));
  v1::SubmitJobRequest request;
  *request.mutable_train() = LongJob();
  request.mutable_train()->set_max_steps(40);
  auto job = client_->Submit(request);
  ASSERT_TRUE(job.ok()) << job.status();
  // A linear projector's checkpoint with its AdamW state is ~1.2 MB: the third does not fit.
  v1::JobStatus failed = WaitJob(job->job_id(), Ended, 300);
  ASSERT_EQ(failed.state(), v1::JOB_STATE_FAILED) << failed.ShortDebugString();
  EXPECT_EQ(failed.restarts(), 0) << failed.reason();
  EXPECT_NE(failed.reason().find("could not store its checkpoint"), std::string::npos)
      << failed.reason();
  EXPECT_NE(failed.reason().find("not retryable"), std::string::npos) << failed.reason();
  for (const std::string& name : ListDir(state + "/checkpoints/" + job->job_id())) {
    EXPECT_EQ(name.find(".tmp."), std::string::npos) << "half-written: " << name;
  }

  // Fill what is left: a submission now cannot be recorded and is refused.
  std::system(("dd if=/dev/zero of=" + state + "/filler bs=64k 2>/dev/null").c_str());
  auto refused = client_->Submit(request);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->jobs_size(), 1);
  EXPECT_TRUE(coordinator_.Running());
  // Room again: the next job is taken, and its id was never handed out before.
  std::remove((state + "/filler").c_str());
  auto next = client_->Submit(request);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_NE(next->job_id(), job->job_id());
  EXPECT_TRUE(client_->CancelJob(next->job_id()).ok());
  std::cout << "full disk: the job failed after " << failed.step() << " steps: " << failed.reason()
            << "; a submission on the full disk: " << refused.status() << "\n";
  TearDown();  // the processes go before the unmount
}

// Issue 16, item 1: a pod with several GPUs runs one worker process per GPU under one
// supervisor (`worker --gpus N`; here on the CPU), each registered as <pod>-gpu<i>, and
// they train together; SIGTERM to the supervisor makes all of them leave and exit 0.
TEST_F(ClusterTest, AMultiGpuWorkerRunsOneRankPerGpuAndTheyLeaveTogether) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(Timing()));
  auto pod = ChildProcess::Spawn(
      {testing::BinaryPath(), "worker", "--gpus=2", "--coordinator=" + address_,
       "--worker_id=pod-a", "--model=" + DemoLm(), "--tokenizer=" + DemoLm() + "/tokenizer.json",
       "--data_dir=" + testing::SourceDir() + "/data/mnist", "--device=cpu", "--threads=1",
       "--rpc_timeout_ms=5000", "--health_listen=127.0.0.1:0"},
      dir_ + "/pod-a.log");
  ASSERT_TRUE(pod.ok()) << pod.status();
  workers_["pod-a"] = std::move(*pod);
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(2));
  auto list = client_->ListWorkers();
  ASSERT_TRUE(list.ok());
  std::vector<std::string> ids;
  for (const auto& w : list->workers()) ids.push_back(w.info().worker_id());
  EXPECT_EQ(ids, (std::vector<std::string>{"pod-a-gpu0", "pod-a-gpu1"}));

  v1::SubmitJobRequest request;
  *request.mutable_train() = SmallJob();
  auto job = client_->Submit(request);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(WaitJob(job->job_id(), Ended, 180).state(), v1::JOB_STATE_SUCCEEDED);

  workers_["pod-a"].Signal(SIGTERM);
  const auto terminated = Steady::now();
  while (workers_["pod-a"].Running() && SecondsSince(terminated) < 60) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_FALSE(workers_["pod-a"].Running()) << "the supervisor ignored SIGTERM; see " << dir_;
  EXPECT_EQ(workers_["pod-a"].exit_status(), 0) << "see " << dir_ << "/pod-a.log";
  list = client_->ListWorkers();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->workers_size(), 0) << "both ranks left the coordinator";
}

TEST_F(ClusterTest, WithNoWorkerComingBackTheJobFailsClearlyInTime) {
  Timing t;
  t.restart_wait_ms = 2000;
  std::string id;
  ASSERT_NO_FATAL_FAILURE(StartLongJob(t, &id));
  v1::JobStatus mid = WaitJob(
      id, [](const v1::JobStatus& s) { return s.step() >= 3 || Ended(s); }, 120);
  ASSERT_EQ(mid.state(), v1::JOB_STATE_RUNNING) << mid.ShortDebugString();
  workers_["worker-1"].Signal(SIGKILL);
  const auto killed = Steady::now();
  v1::JobStatus failed = WaitJob(id, Ended, 30);
  const double fail_s = SecondsSince(killed);
  ASSERT_EQ(failed.state(), v1::JOB_STATE_FAILED) << failed.ShortDebugString();
  EXPECT_NE(failed.reason().find("attempt 1 ended"), std::string::npos) << failed.reason();
  EXPECT_NE(failed.reason().find("not enough workers"), std::string::npos) << failed.reason();
  // worker timeout (3 s) + restart wait (2 s), with slack for a loaded machine.
  EXPECT_LT(fail_s, 15.0);
  // No process is left hanging: the survivor is back to idle and still serving.
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(1, 30));
  EXPECT_TRUE(workers_["worker-0"].Running());
  std::cout << "no worker back: the job failed " << fail_s << " s after the kill\n";
}

TEST_F(ClusterTest, BadRequestsGetClearStatusesAndTheCoordinatorKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(Timing()));
  StartWorker("worker-0");
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(1));

  auto unknown = client_->GetJob("train-999999", false);
  EXPECT_TRUE(absl::IsNotFound(unknown.status())) << unknown.status();
  EXPECT_TRUE(absl::IsNotFound(client_->CancelJob("train-999999").status()));

  v1::SubmitJobRequest zero;
  *zero.mutable_train() = SmallJob();
  zero.mutable_train()->set_world_size(1);
  zero.mutable_train()->set_batch_size(0);
  auto s = client_->Submit(zero);
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  EXPECT_NE(s.status().message().find("batch_size"), std::string::npos) << s.status();
  zero.mutable_train()->set_batch_size(-3);
  EXPECT_TRUE(absl::IsInvalidArgument(client_->Submit(zero).status()));

  v1::SubmitJobRequest too_big;
  *too_big.mutable_train() = SmallJob();
  too_big.mutable_train()->set_world_size(3);
  s = client_->Submit(too_big);
  EXPECT_TRUE(absl::IsFailedPrecondition(s.status())) << s.status();
  EXPECT_NE(s.status().message().find("world_size 3"), std::string::npos) << s.status();

  v1::SubmitJobRequest bad_eval;
  bad_eval.mutable_eval()->set_checkpoint("train-424242");
  EXPECT_TRUE(absl::IsFailedPrecondition(client_->Submit(bad_eval).status()));

  // An oversized message is refused by the server's bound, not buffered.
  ClientOptions big = client_->options();
  big.max_message_bytes = 64 << 20;
  CoordinatorClient big_client(big);
  absl::Status oversized = big_client.Set("x/blob", std::string(9 << 20, 'a'));
  EXPECT_TRUE(absl::IsResourceExhausted(oversized)) << oversized;

  // Nobody outside a running attempt writes or reads its rendezvous keys (a pre-set
  // NCCL id would fail every attempt of the next job).
  client_->SetSession("worker-0", "guessed-session");
  EXPECT_TRUE(
      absl::IsPermissionDenied(client_->Set("train-000001/attempt-1/nccl_unique_id", "poison")));
  EXPECT_TRUE(absl::IsPermissionDenied(
      client_->Get("train-000001/attempt-1/nccl_unique_id", milliseconds(0)).status()));
  // A checkpoint from no running rank 0 is refused and nothing is stored.
  v1::CheckpointHeader header;
  header.mutable_ref()->set_job_id("train-999999");
  header.set_step(1);
  EXPECT_FALSE(client_->UploadCheckpoint(header, "bytes").ok());
  EXPECT_EQ(client_->ListCheckpoints("")->checkpoints_size(), 0);

  // Malformed job JSON: the client names the file and the problem, exit status 2.
  const std::string bad_json = dir_ + "/bad_job.json";
  ASSERT_TRUE(WriteFileAtomic(bad_json, R"({"batchSize": 4, "bachSize": 2})").ok());
  auto submit = ChildProcess::Spawn({testing::BinaryPath(), "submit", "train",
                                     "--coordinator=" + address_, "--job_json=" + bad_json},
                                    dir_ + "/submit.log");
  ASSERT_TRUE(submit.ok());
  while (submit->Running()) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(submit->exit_status(), 2);
  const std::string log = *ReadFile(dir_ + "/submit.log");
  EXPECT_NE(log.find("bad_job.json"), std::string::npos) << log;
  EXPECT_NE(log.find("bachSize"), std::string::npos) << log;

  // Still serving, nothing lost: a valid job runs to the end and is listed.
  v1::SubmitJobRequest good;
  *good.mutable_train() = SmallJob();
  good.mutable_train()->set_world_size(1);
  good.mutable_train()->set_train_digits(16);
  auto ok = client_->Submit(good);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(WaitJob(ok->job_id(), Ended, 120).state(), v1::JOB_STATE_SUCCEEDED);
  auto jobs = client_->ListJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->jobs_size(), 1);
  EXPECT_EQ(jobs->jobs(0).job_id(), ok->job_id());
  EXPECT_TRUE(coordinator_.Running());
}

}  // namespace
}  // namespace llava

namespace llava {
namespace {

// `llava-mnist <args>` against the test's coordinator: its stdout (exit status in *rc).
std::string RunCli(const std::string& args, int* rc) {
  std::string out;
  FILE* p = popen((testing::BinaryPath() + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// init_from in real processes (and an eval's accuracy recorded beside the checkpoint it
// scored): a job started from another job's checkpoint with lr 0 ends
// with exactly that projector (its weights were the start; AdamW with lr 0 moves nothing),
// its own steps counted from 0, and `status` (text and --json) names where it started.
TEST_F(ClusterTest, AJobStartsFromAnotherJobsCheckpoint) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(Timing()));
  StartWorker("worker-0");
  ASSERT_NO_FATAL_FAILURE(WaitIdleWorkers(1));
  v1::SubmitJobRequest first;
  *first.mutable_train() = SmallJob();
  first.mutable_train()->set_world_size(1);
  first.mutable_train()->set_train_digits(12);  // 3 steps of 4
  auto a = client_->Submit(first);
  ASSERT_TRUE(a.ok()) << a.status();
  v1::JobStatus a_done = WaitJob(a->job_id(), Ended, 180);
  ASSERT_EQ(a_done.state(), v1::JOB_STATE_SUCCEEDED) << a_done.ShortDebugString();

  // An eval of A's checkpoint records its accuracy beside it (what keep_best ranks by).
  v1::SubmitJobRequest eval;
  eval.mutable_eval()->set_checkpoint(a->job_id());
  eval.mutable_eval()->set_eval_digits(4);
  eval.mutable_eval()->set_max_new_tokens(4);
  auto e = client_->Submit(eval);
  ASSERT_TRUE(e.ok()) << e.status();
  v1::JobStatus e_done = WaitJob(e->job_id(), Ended, 180);
  ASSERT_EQ(e_done.state(), v1::JOB_STATE_SUCCEEDED) << e_done.ShortDebugString();
  auto listed = client_->ListCheckpoints(a->job_id());
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->checkpoints_size(), 1);
  EXPECT_EQ(listed->checkpoints(0).eval_job_id(), e->job_id());
  EXPECT_EQ(listed->checkpoints(0).eval_accuracy(), e_done.eval_accuracy());

  v1::SubmitJobRequest second = first;
  second.mutable_train()->set_lr(0);
  second.mutable_train()->set_seed(6);  // another fresh init: only init_from makes them equal
  second.mutable_train()->set_init_from(a->job_id());
  auto b = client_->Submit(second);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->train().init_from(), a_done.latest_checkpoint_id());
  v1::JobStatus b_done = WaitJob(b->job_id(), Ended, 180);
  ASSERT_EQ(b_done.state(), v1::JOB_STATE_SUCCEEDED) << b_done.ShortDebugString();
  EXPECT_EQ(b_done.resumed_from_step(), 0);
  EXPECT_EQ(b_done.latest_checkpoint_step(), 3);

  auto a_ckpt = client_->DownloadCheckpoint(a->job_id(), /*projector_only=*/true);
  auto b_ckpt = client_->DownloadCheckpoint(b->job_id());
  ASSERT_TRUE(a_ckpt.ok() && b_ckpt.ok());
  auto pa = ParseTrainCheckpoint(a_ckpt->bytes, "a"), pb = ParseTrainCheckpoint(b_ckpt->bytes, "b");
  ASSERT_TRUE(pa.ok() && pb.ok());
  ASSERT_EQ(pa->projector_tensors.size(), pb->projector_tensors.size());
  for (size_t i = 0; i < pa->projector_tensors.size(); ++i) {
    EXPECT_TRUE(at::equal(pa->projector_tensors[i].tensor, pb->projector_tensors[i].tensor))
        << pa->projector_tensors[i].name;
  }
  EXPECT_FALSE(pb->optimizer_state.empty());  // its own, fresh at step 0

  int rc = -1;
  const std::string text = RunCli("status " + b->job_id() + " --coordinator=" + address_, &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("init_from " + a_done.latest_checkpoint_id()), std::string::npos) << text;
  const std::string json =
      RunCli("status " + b->job_id() + " --json --coordinator=" + address_, &rc);
  EXPECT_EQ(rc, 0) << json;
  EXPECT_NE(json.find("\"initFrom\":\"" + a_done.latest_checkpoint_id() + "\""), std::string::npos)
      << json;

  v1::SubmitJobRequest missing = first;
  missing.mutable_train()->set_init_from("train-424242");
  auto refused = client_->Submit(missing);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
}

}  // namespace
}  // namespace llava
