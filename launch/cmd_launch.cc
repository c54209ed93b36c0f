// `llava-mnist launch --workers N`: the product's main job on one machine. Starts a
// coordinator and N workers (one per GPU on a GPU machine), submits the training job and
// then the eval job, shows progress, prints the report, and stops every process it
// started on success, failure or Ctrl-C.
#include <torch/cuda.h>

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/elapsed.h"
#include "common/eval_report.h"
#include "common/file_util.h"
#include "common/llama_weights.h"
#include "common/log.h"
#include "common/loss_curve.h"
#include "common/status_macros.h"
#include "common/validation.h"
#include "launch/cluster_flags.h"
#include "launch/cmd_cluster.h"
#include "launch/flags_common.h"
#include "launch/main_recipe.h"
#include "launch/process.h"
#include "launch/progress.h"
#include "launch/recipe.h"
#include "launch/signals.h"
#include "launch/vlm_setup.h"

ABSL_FLAG(int64_t, workers, 2, "launch: worker processes (on a GPU machine, one per GPU)");
ABSL_FLAG(std::string, launch_dir, llava::GetEnvOr("LLAVA_LAUNCH_DIR", "runs/launch"),
          "launch: logs, coordinator state, the fetched checkpoint, loss curve and report");
ABSL_FLAG(int64_t, startup_timeout_ms, 600000,
          "launch: how long the coordinator and workers may take to start (model loading)");
ABSL_FLAG(std::string, worker_args, "", "launch: extra flags for every worker, space-separated");
ABSL_FLAG(std::string, coordinator_args, "",
          "launch: extra flags for the coordinator, space-separated");

ABSL_DECLARE_FLAG(std::string, eval_questions);

namespace llava {
namespace {

std::vector<std::string> SplitSpaces(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// Everything a launch does, settled from the flags before any process starts: a bad
// flag or recipe fails here, with nothing to stop.
struct LaunchPlan {
  int64_t workers = 0;
  std::string dir;  // the run directory
  std::string exe;  // this binary, run as coordinator and workers
  bool cuda = false;
  int64_t threads_per_worker = 1;  // CPU workers share the cores
  std::chrono::milliseconds startup_timeout{0};
  std::vector<std::string> coordinator_args;  // --coordinator_args
  // The flags every worker gets (model, data, precision) and --worker_args after them.
  std::vector<std::string> worker_args;
  ClientOptions client;
  v1::SubmitJobRequest train;
  v1::SubmitJobRequest eval;  // its checkpoint is set once training has succeeded
};

absl::StatusOr<LaunchPlan> LaunchPlanFromFlags() {
  LaunchPlan plan;
  plan.workers = absl::GetFlag(FLAGS_workers);
  LM_RETURN_IF_ERROR(CheckPositive("--workers", plan.workers));
  plan.dir = absl::GetFlag(FLAGS_launch_dir);
  plan.exe = SelfExecutable();
  plan.startup_timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_startup_timeout_ms));
  LM_RETURN_IF_ERROR(CheckPositive("--startup_timeout_ms", plan.startup_timeout.count()));
  // Devices: one GPU per worker when the model goes to CUDA.
  LM_ASSIGN_OR_RETURN(ModelOptions model_options, ModelOptionsFromFlags());
  LM_RETURN_IF_ERROR(ValidateModelOptions(absl::GetFlag(FLAGS_model), model_options));
  plan.cuda = model_options.device.is_cuda();
  const int64_t gpus = static_cast<int64_t>(torch::cuda::device_count());
  if (plan.cuda && plan.workers > gpus) {
    return absl::InvalidArgumentError(
        absl::StrCat("--workers ", plan.workers, " but only ", gpus, " GPUs"));
  }
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  plan.threads_per_worker = std::max<int64_t>(1, cores / plan.workers);
  plan.coordinator_args = SplitSpaces(absl::GetFlag(FLAGS_coordinator_args));
  plan.worker_args = {
      absl::StrCat("--model=", absl::GetFlag(FLAGS_model)),
      absl::StrCat("--tokenizer=", absl::GetFlag(FLAGS_tokenizer)),
      absl::StrCat("--data_dir=", absl::GetFlag(FLAGS_data_dir)),
      absl::StrCat("--dtype=", absl::GetFlag(FLAGS_dtype)),
      absl::StrCat("--weights=", absl::GetFlag(FLAGS_weights)),
      absl::StrCat("--fp8_backward=", absl::GetFlag(FLAGS_fp8_backward)),
      absl::StrCat("--fp8_transposed=", absl::GetFlag(FLAGS_fp8_transposed)),
      absl::StrCat("--fp8_fuse=", absl::GetFlag(FLAGS_fp8_fuse) ? "true" : "false"),
      absl::StrCat("--fp8_fast_accum=", absl::GetFlag(FLAGS_fp8_fast_accum) ? "true" : "false"),
      absl::StrCat("--float32_attention=",
                   absl::GetFlag(FLAGS_float32_attention) ? "true" : "false"),
      absl::StrCat("--seed=", absl::GetFlag(FLAGS_seed)),
      "--collective_host=127.0.0.1"};
  for (const auto& a : SplitSpaces(absl::GetFlag(FLAGS_worker_args))) plan.worker_args.push_back(a);
  LM_ASSIGN_OR_RETURN(plan.client, ClientOptionsFromFlags());
  // The cluster `launch` starts listens on loopback in plaintext.
  plan.client.security = RpcSecurity::Insecure();
  // The main job's recipe (recipes/main.json, compiled in; --recipe FILE instead), then
  // --job_json, then the flags given.
  LM_ASSIGN_OR_RETURN(std::string recipe, RecipeJsonFromFlags(kMainRecipeJson));
  LM_ASSIGN_OR_RETURN(*plan.train.mutable_train(), TrainSpecFromFlags(recipe));
  plan.train.mutable_train()->set_world_size(plan.workers);
  LM_ASSIGN_OR_RETURN(*plan.eval.mutable_eval(), EvalSpecFromFlags(""));
  plan.eval.mutable_eval()->clear_questions();
  for (const auto& q : SplitPhrasings(absl::GetFlag(FLAGS_eval_questions))) {
    plan.eval.mutable_eval()->add_questions(q);
  }
  return plan;
}

// Every process this launch started; stopped in the destructor whatever happens.
struct Cluster {
  ChildProcess coordinator;
  std::vector<ChildProcess> workers;
  ~Cluster() {
    for (auto& w : workers) w.Stop(std::chrono::milliseconds(5000));
    coordinator.Stop(std::chrono::milliseconds(5000));
  }
  absl::Status CheckAlive() {
    if (!coordinator.Running()) {
      return absl::UnavailableError(absl::StrCat("the coordinator exited (status ",
                                                 coordinator.exit_status(), "); see ",
                                                 coordinator.log_path()));
    }
    for (auto& w : workers) {
      if (!w.Running()) {
        return absl::UnavailableError(
            absl::StrCat("a worker exited (status ", w.exit_status(), "); see ", w.log_path()));
      }
    }
    return absl::OkStatus();
  }
};

absl::Status WaitFor(const std::function<absl::StatusOr<bool>()>& ready, const std::string& what,
                     std::chrono::milliseconds timeout, Cluster& cluster) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (StopRequested().load()) return absl::CancelledError("interrupted");
    LM_RETURN_IF_ERROR(cluster.CheckAlive());
    auto r = ready();
    if (r.ok() && *r) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("timed out waiting for ", what));
}

// Watches a job with a progress bar until it ends; Ctrl-C cancels it.
absl::StatusOr<v1::JobStatus> Follow(JobClient& client, const v1::JobStatus& submitted,
                                     Cluster& cluster) {
  const bool train = submitted.kind() == v1::JOB_KIND_TRAIN;
  std::unique_ptr<Progress> progress;
  int64_t restarts = 0;
  while (true) {
    if (StopRequested().load()) {
      (void)client.CancelJob(submitted.job_id());
      return absl::CancelledError("interrupted; the job was cancelled");
    }
    LM_RETURN_IF_ERROR(cluster.CheckAlive());
    auto done = client.WatchJob(
        submitted.job_id(), std::chrono::milliseconds(500), [&](const v1::JobStatus& s) {
          const int64_t total = train ? s.total_steps() : s.eval_images_total();
          if (!progress && total > 0) {
            progress =
                std::make_unique<Progress>(train ? "train" : "eval", total, ProgressOptions());
          }
          if (s.restarts() != restarts) {
            restarts = s.restarts();
            std::cerr << "\n" << StatusLine(s) << "\n";
          }
          if (!progress) return;
          if (train && s.has_last_step()) {
            progress->Update(s.step(), {{"loss", s.last_step().loss()},
                                        {"lr", s.last_step().lr()},
                                        {"samples/s", s.last_step().samples_per_s()}});
          } else if (!train) {
            progress->Update(s.eval_images_done(), {});
          }
        });
    if (done.ok()) {
      if (progress) progress->Finish();
      return *done;
    }
    if (!absl::IsDeadlineExceeded(done.status())) return done.status();
  }
}

absl::Status WriteJson(const std::string& path, const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    return absl::InternalError(absl::StrCat(path, ": cannot encode"));
  }
  return WriteFileAtomic(path, json);
}

// Medians over the steps after the first few (warm-up: kernel selection, allocator).
void PrintTrainSpeed(const v1::JobStatus& job) {
  std::vector<double> step_ms, reduce_ms;
  for (int i = 3; i < job.history_size(); ++i) {
    step_ms.push_back(job.history(i).step_ms());
    reduce_ms.push_back(job.history(i).allreduce_ms());
  }
  if (step_ms.empty()) return;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const v1::TrainSpec& t = job.train();
  const int64_t global = t.batch_size() * t.grad_accum() * t.world_size();
  const double ms = median(step_ms);
  std::cout << absl::StrFormat(
      "train: median step %.1f ms (all-reduce %.2f ms) over %d steps, global batch %d on %d "
      "workers: "
      "%.1f samples/s\n",
      ms, median(reduce_ms), step_ms.size(), global, t.world_size(), global / (ms / 1000.0));
  const v1::StepMetrics& last = job.history(job.history_size() - 1);
  if (last.skipped_steps() > 0) {
    std::cout << absl::StrFormat(
        "train: %d update(s) skipped for float16 overflow (loss scale now %g)\n",
        last.skipped_steps(), last.loss_scale());
  }
}

// Each launch starts from an empty coordinator state: its jobs are this run's only.
absl::Status PrepareRunDir(const std::string& dir) {
  LM_RETURN_IF_ERROR(MakeDirs(dir));
  // (RemoveTree, not std::filesystem::remove_all: the PyTorch wheel's libtorch exports a
  // broken remove_all that calls bind to.)
  LM_RETURN_IF_ERROR(RemoveTree(dir + "/coordinator-state"));
  LM_RETURN_IF_ERROR(RemoveTree(dir + "/tb"));
  std::remove((dir + "/coordinator.port").c_str());
  return absl::OkStatus();
}

// Starts the coordinator on an ephemeral loopback port; its address once it listens.
absl::StatusOr<std::string> StartCoordinator(const LaunchPlan& plan, Cluster& cluster) {
  const std::string& dir = plan.dir;
  std::vector<std::string> argv = {plan.exe, "coordinator", "--listen=127.0.0.1:0",
                                   absl::StrCat("--state_dir=", dir, "/coordinator-state"),
                                   absl::StrCat("--port_file=", dir, "/coordinator.port"),
                                   // The jobs' TensorBoard files in the run directory,
                                   // written as they train: tensorboard --logdir <dir>/tb.
                                   absl::StrCat("--tensorboard_dir=", dir, "/tb")};
  argv.insert(argv.end(), plan.coordinator_args.begin(), plan.coordinator_args.end());
  LM_ASSIGN_OR_RETURN(cluster.coordinator, ChildProcess::Spawn(argv, dir + "/coordinator.log"));
  std::string port;
  LM_RETURN_IF_ERROR(WaitFor(
      [&]() -> absl::StatusOr<bool> {
        auto p = ReadFile(dir + "/coordinator.port");
        if (!p.ok() || p->empty()) return false;
        port = *p;
        return true;
      },
      "the coordinator to listen", plan.startup_timeout, cluster));
  const std::string address = absl::StrCat("127.0.0.1:", port);
  std::cout << "coordinator on " << address << " (log " << dir << "/coordinator.log)\n";
  return address;
}

// Starts the workers and waits until all have loaded the model and registered.
absl::Status StartWorkers(const LaunchPlan& plan, const std::string& address, JobClient& client,
                          Cluster& cluster) {
  for (int64_t i = 0; i < plan.workers; ++i) {
    std::vector<std::string> argv = {
        plan.exe, "worker", absl::StrCat("--coordinator=", address),
        absl::StrCat("--worker_id=worker-", i),
        absl::StrCat("--device=", plan.cuda ? absl::StrCat("cuda:", i) : std::string("cpu"))};
    if (!plan.cuda) argv.push_back(absl::StrCat("--threads=", plan.threads_per_worker));
    argv.insert(argv.end(), plan.worker_args.begin(), plan.worker_args.end());
    LM_ASSIGN_OR_RETURN(ChildProcess w,
                        ChildProcess::Spawn(argv, absl::StrCat(plan.dir, "/worker-", i, ".log")));
    cluster.workers.push_back(std::move(w));
  }
  LM_RETURN_IF_ERROR(WaitFor(
      [&]() -> absl::StatusOr<bool> {
        LM_ASSIGN_OR_RETURN(v1::ListWorkersResponse list, client.ListWorkers());
        int64_t alive = 0;
        for (const auto& w : list.workers()) alive += w.alive() ? 1 : 0;
        return alive >= plan.workers;
      },
      absl::StrCat(plan.workers, " workers to load the model and register"), plan.startup_timeout,
      cluster));
  std::cout << plan.workers << " workers ready (" << (plan.cuda ? "cuda, nccl" : "cpu, gloo")
            << "; logs " << plan.dir << "/worker-*.log)\n";
  return absl::OkStatus();
}

// Runs the training job to its end; writes its record, loss curve and projector into the
// run directory. The finished job.
absl::StatusOr<v1::JobStatus> Train(const LaunchPlan& plan, JobClient& client, Cluster& cluster) {
  const std::string& dir = plan.dir;
  LM_ASSIGN_OR_RETURN(v1::JobStatus train_job, client.Submit(plan.train));
  std::cout << "training job " << train_job.job_id() << ": " << train_job.train().ShortDebugString()
            << "\n";
  LM_ASSIGN_OR_RETURN(v1::JobStatus trained, Follow(client, train_job, cluster));
  std::cout << StatusLine(trained) << "\n";
  if (trained.state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::AbortedError(absl::StrCat("training ended ", v1::JobState_Name(trained.state()),
                                           ": ", trained.reason()));
  }
  LM_ASSIGN_OR_RETURN(v1::JobStatus with_history, client.GetJob(trained.job_id(), true));
  LM_RETURN_IF_ERROR(WriteJson(dir + "/train_job.json", with_history));
  PrintTrainSpeed(with_history);
  LossCurve curve;
  for (const v1::StepMetrics& m : with_history.history()) {
    LossPoint p;
    p.step = m.step();
    p.epoch = m.epoch();
    p.loss = m.loss();
    p.lr = m.lr();
    p.samples_per_s = m.samples_per_s();
    curve.Add(p);
  }
  LM_RETURN_IF_ERROR(curve.WriteCsv(dir + "/loss.csv"));
  LM_RETURN_IF_ERROR(curve.WriteSvg(dir + "/loss.svg", "llava-mnist projector training (launch)"));
  LM_ASSIGN_OR_RETURN(CheckpointDownload ckpt, client.DownloadCheckpoint(trained.job_id()));
  LM_RETURN_IF_ERROR(WriteFileAtomic(dir + "/projector.safetensors", ckpt.bytes));
  std::cout << "checkpoint " << dir << "/projector.safetensors (" << ckpt.header.checkpoint_id()
            << ")\n";
  return trained;
}

// Runs the eval job on the trained checkpoint; prints the report and writes it.
absl::Status Evaluate(const LaunchPlan& plan, const std::string& train_job_id, JobClient& client,
                      Cluster& cluster) {
  v1::SubmitJobRequest eval_request = plan.eval;
  eval_request.mutable_eval()->set_checkpoint(train_job_id);
  const auto eval_start = std::chrono::steady_clock::now();
  LM_ASSIGN_OR_RETURN(v1::JobStatus eval_job, client.Submit(eval_request));
  std::cout << "eval job " << eval_job.job_id() << " on " << eval_job.eval().checkpoint() << "\n";
  LM_ASSIGN_OR_RETURN(v1::JobStatus evaluated, Follow(client, eval_job, cluster));
  if (evaluated.state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::AbortedError(absl::StrCat("eval ended ", v1::JobState_Name(evaluated.state()),
                                           ": ", evaluated.reason()));
  }
  const double eval_s = SecondsSince(eval_start);
  LM_ASSIGN_OR_RETURN(EvalReport report,
                      EvalReport::FromJson(evaluated.eval_report_json(), eval_job.job_id()));
  std::cout << absl::StrFormat(
      "eval: %d answers on %d workers in %.2f s (%.1f answers/s, submission to report)\n",
      report.NumSamples(), evaluated.worker_ids_size(), eval_s,
      report.NumSamples() / std::max(eval_s, 1e-9));
  LM_RETURN_IF_ERROR(WriteFileAtomic(plan.dir + "/eval_report.json", evaluated.eval_report_json()));
  std::cout << report.ToTable() << "\n";
  return absl::OkStatus();
}

absl::Status Launch(const LaunchPlan& plan) {
  LM_RETURN_IF_ERROR(PrepareRunDir(plan.dir));
  Cluster cluster;
  LM_ASSIGN_OR_RETURN(const std::string address, StartCoordinator(plan, cluster));
  ClientOptions client_options = plan.client;
  client_options.address = address;
  CoordinatorClient client(client_options);
  LM_RETURN_IF_ERROR(StartWorkers(plan, address, client, cluster));
  LM_ASSIGN_OR_RETURN(const v1::JobStatus trained, Train(plan, client, cluster));
  LM_RETURN_IF_ERROR(Evaluate(plan, trained.job_id(), client, cluster));
  const std::string& dir = plan.dir;
  std::cout << "checkpoint " << dir << "/projector.safetensors, loss curve " << dir
            << "/loss.{csv,svg}, report " << dir
            << "/eval_report.json, TensorBoard: tensorboard --logdir " << dir << "/tb\n";
  return absl::OkStatus();
}

}  // namespace

absl::Status RunLaunch(const std::vector<char*>&) {
  InstallStopHandlers();
  LM_ASSIGN_OR_RETURN(const LaunchPlan plan, LaunchPlanFromFlags());
  return Launch(plan);
}

}  // namespace llava
