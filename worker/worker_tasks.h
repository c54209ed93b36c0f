// What a worker does with one task of a job attempt: a training rank (the
// single-process trainer's step on the coordinator's shard, the gradients summed over
// the group's collective, rank 0's checkpoints uploaded) or an eval share (batched greedy
// answers on a range of test digits, the projector downloaded once per attempt and shared
// over the attempt's group: projector_share.h). Runs on the worker's task thread; `abort`
// is set from the heartbeat thread and checked between steps.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/forward_options.h"
#include "common/llama_weights.h"
#include "common/mnist_idx.h"
#include "common/projector.h"
#include "common/tokenizer.h"
#include "protos/llava.pb.h"
#include "worker/collective.h"
#include "worker/coordinator_roles.h"

namespace llava {

// What the worker loaded once and keeps for every job.
struct WorkerResources {
  const LlamaModel* model = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const MnistSet* train = nullptr;
  const MnistSet* test = nullptr;
  std::string model_spec;
  ForwardOptions forward;  // how the model computes, in every job (the worker's flags)
};

// The last evaluated checkpoint's projector, restored on the model's device, kept between
// eval tasks of one worker: evaluating the same checkpoint again (a split over other
// workers, other questions or digits) skips its download, parse and restore. Keyed by
// the coordinator session as well, since a new coordinator may reuse checkpoint ids.
struct EvalCheckpointCache {
  std::string session_id;
  std::string checkpoint_id;
  std::string checkpoint_sha256;  // of the full checkpoint file, as the task named it
  // The projector-only checkpoint file it was restored from: what this worker sends its
  // eval group when it is rank 0 and another rank lacks the projector.
  std::string projector_bytes;
  ProjectorConfig config;
  Projector projector{nullptr};
};

// Makes a rank's collective group; CreateCollective (collective.h) is the real one.
using CollectiveFactory = std::function<absl::StatusOr<std::unique_ptr<Collective>>(
    const CollectiveOptions& options, RendezvousClient* store)>;

struct TaskEnv {
  WorkerCoordinator* client = nullptr;
  WorkerResources resources;
  std::string collective_engine = "gloo";
  std::string gloo_host = "127.0.0.1";
  std::atomic<bool>* abort = nullptr;
  // Makes a training attempt's group; null: CreateCollective. Tests hand in a
  // FakeCollective (tests/fake_collective.h) here.
  CollectiveFactory make_collective;
  // The worker's; used by eval tasks only (may be null: no caching).
  EvalCheckpointCache* eval_cache = nullptr;
  std::string session_id;
  // Called with the group once it is formed (and with null when it is gone) so that an
  // abort from the heartbeat thread can reach it.
  std::function<void(Collective*)> on_collective;
  // Every step's metrics, on every rank (rank 0's go to the coordinator, through heartbeats).
  std::function<void(const v1::StepMetrics&)> on_step;
  // Eval answers done so far.
  std::function<void(int64_t)> on_eval_progress;
};

struct TaskOutcome {
  absl::Status status;
  bool retryable = true;  // false: the spec itself is bad, a restart cannot help
  int64_t step = 0;       // training: steps done
  std::string eval_report_json;
};

TaskOutcome RunTrainTask(const v1::Task& task, const TaskEnv& env);
TaskOutcome RunEvalTask(const v1::Task& task, const TaskEnv& env);

// Answers two test digits (a random projector, the questions and prompt a job gets by
// default, two new tokens) on the model's device. A GPU worker runs it before it
// registers, so that its first eval job pays less for the device's first use (kernel
// modules load lazily, library handles and workspaces are made on first call); what it
// saves, and what remains (the batch's shape), is in bench/RESULTS.md.
absl::Status WarmUpEval(const WorkerResources& r);

}  // namespace llava
