#include "coordinator/job_scheduler.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/eval_report.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace llava {
namespace {

const char* StateName(v1::JobState s) { return v1::JobState_Name(s).c_str() + 10; }

bool ModelMatches(const std::string& wanted, const v1::WorkerInfo& info) {
  return wanted.empty() || wanted == info.model();
}

std::string JobsDir(const std::string& state_dir) { return state_dir + "/jobs"; }
std::string CounterPath(const std::string& state_dir) { return state_dir + "/next_job_id"; }

constexpr int64_t kDefaultPageSize = 100;
constexpr int64_t kMaxPageSize = 1000;
// Attempts listed in a job's status: enough for any history worth reading, bounded for a
// job that keeps regrouping.
constexpr int kMaxAttemptsShown = 64;

// A record written before min_world_size existed: not elastic.
int64_t MinWorldSize(const v1::TrainSpec& spec) {
  return spec.has_min_world_size() ? spec.min_world_size() : spec.world_size();
}

// Records why the newest attempt ended, unless it already says.
void EndLastAttempt(v1::JobStatus& s, const std::string& why) {
  if (s.attempts_size() == 0) return;
  v1::Attempt* last = s.mutable_attempts(s.attempts_size() - 1);
  if (last->ended().empty()) last->set_ended(ForLog(why, 2048));
}

// "train-000042" -> 42; -1 when the id is not of the scheduler's form.
int64_t SeqOf(const std::string& id) {
  const size_t dash = id.rfind('-');
  if (dash == std::string::npos || dash + 1 >= id.size()) return -1;
  int64_t n = 0;
  for (size_t i = dash + 1; i < id.size(); ++i) {
    if (id[i] < '0' || id[i] > '9' || n > (int64_t{1} << 50)) return -1;
    n = n * 10 + (id[i] - '0');
  }
  return n;
}

// Why a record read back from disk cannot be used, or OK. It is checked as strictly as a
// submission (the bounds may have tightened since it was written).
absl::Status ValidateRecord(const v1::JobStatus& s, const std::string& file_stem) {
  LM_RETURN_IF_ERROR(CheckId("job_id", s.job_id()));
  if (s.job_id() != file_stem) {
    return absl::InvalidArgumentError(
        absl::StrCat("job_id '", s.job_id(), "' differs from the file name"));
  }
  if (SeqOf(s.job_id()) <= 0) return absl::InvalidArgumentError("job_id has no sequence number");
  if (s.kind() == v1::JOB_KIND_TRAIN && s.has_train()) {
    v1::TrainSpec spec = s.train();
    return ResolveTrainSpec(&spec);
  }
  if (s.kind() == v1::JOB_KIND_EVAL && s.has_eval()) {
    v1::EvalSpec spec = s.eval();
    return ResolveEvalSpec(&spec);
  }
  return absl::InvalidArgumentError("its kind and spec do not match");
}

}  // namespace

JobScheduler::JobScheduler(SchedulerOptions options, WorkerRegistry* registry,
                           CheckpointStore* checkpoints, RendezvousStore* rendezvous)
    : options_(std::move(options)),
      registry_(registry),
      checkpoints_(checkpoints),
      rendezvous_(rendezvous),
      tensorboard_(options_.tensorboard_dir.empty()
                       ? nullptr
                       : std::make_unique<JobTensorBoard>(options_.tensorboard_dir)) {}

bool JobScheduler::Terminal(const Job& job) const { return IsTerminal(job.status.state()); }

JobScheduler::Job* JobScheduler::Find(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

const JobScheduler::Job* JobScheduler::Find(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

std::string JobScheduler::RendezvousPrefix(const Job& job) const {
  return absl::StrCat(job.status.job_id(), "/attempt-", job.status.attempt(), "/");
}

void JobScheduler::Changed(Job& job, bool persist) {
  ++job.version;
  job.status.set_updated_unix_ms(absl::ToUnixMillis(absl::Now()));
  if (Terminal(job) && job.finished_at == Clock::time_point()) job.finished_at = Clock::now();
  if (Terminal(job)) checkpoints_->Unpin(job.status.job_id());
  if (persist) {
    // The job lives on in memory either way; a lost update is rewritten at the next
    // change and at shutdown.
    absl::Status s = Persist(job);
    if (!s.ok()) LM_LOG(ERROR) << "job " << job.status.job_id() << ": record not written: " << s;
  }
  changed_.SignalAll();
}

absl::Status JobScheduler::Persist(const Job& job) const {
  if (options_.state_dir.empty()) return absl::OkStatus();
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(job.status, &json, options).ok()) {
    return absl::InternalError(
        absl::StrCat("job ", job.status.job_id(), ": cannot encode its record"));
  }
  LM_RETURN_IF_ERROR(MakeDirs(JobsDir(options_.state_dir)));
  return WriteFileAtomic(JobsDir(options_.state_dir) + "/" + job.status.job_id() + ".json", json);
}

absl::Status JobScheduler::PersistNextId(int64_t next) const {
  if (options_.state_dir.empty()) return absl::OkStatus();
  return WriteFileAtomic(CounterPath(options_.state_dir), absl::StrCat(next, "\n"));
}

void JobScheduler::SetAside(const std::string& name, const std::string& reason) const {
  const std::string dir = JobsDir(options_.state_dir);
  const std::string aside = dir + "/rejected";
  absl::Status s = MakeDirs(aside);
  if (s.ok() && std::rename((dir + "/" + name).c_str(), (aside + "/" + name).c_str()) != 0) {
    s = absl::InternalError(absl::StrCat("cannot move ", dir, "/", name, " to ", aside));
  }
  if (s.ok()) s = WriteFileAtomic(aside + "/" + name + ".reason", reason + "\n");
  LM_LOG(WARNING) << "jobs: record " << dir << "/" << name << " set aside (" << reason << ")"
                  << (s.ok() ? std::string() : absl::StrCat("; ", s.message()));
}

absl::Status JobScheduler::LoadState() {
  if (options_.state_dir.empty()) return absl::OkStatus();
  const std::string dir = JobsDir(options_.state_dir);
  int64_t next = 1;
  if (auto counter = ReadFile(CounterPath(options_.state_dir)); counter.ok()) {
    next = std::max<int64_t>(1, std::atoll(counter->c_str()));
  }
  std::vector<std::unique_ptr<Job>> loaded;
  for (const std::string& name : ListDir(dir)) {
    if (name.size() <= 5 || name.substr(name.size() - 5) != ".json") continue;
    // Even a record set aside spent its id.
    next = std::max(next, SeqOf(name.substr(0, name.size() - 5)) + 1);
    auto json = ReadFile(dir + "/" + name);
    auto job = std::make_unique<Job>();
    google::protobuf::util::JsonParseOptions parse;
    parse.ignore_unknown_fields = true;
    absl::Status valid = json.status();
    if (valid.ok() &&
        !google::protobuf::util::JsonStringToMessage(*json, &job->status, parse).ok()) {
      valid = absl::InvalidArgumentError("not a job record (JSON of JobStatus)");
    }
    if (valid.ok()) valid = ValidateRecord(job->status, name.substr(0, name.size() - 5));
    if (!valid.ok()) {
      SetAside(name, std::string(valid.message()));
      continue;
    }
    job->seq = SeqOf(job->status.job_id());
    next = std::max(next, job->seq + 1);
    loaded.push_back(std::move(job));
  }
  absl::MutexLock lock(&mu_);
  const auto now = Clock::now();
  next_id_ = std::max(next_id_, next);
  for (auto& job : loaded) {
    const std::string id = job->status.job_id();
    if (!Terminal(*job) && job->status.state() != v1::JOB_STATE_QUEUED) {
      // Its workers were told nothing by this coordinator: start the job again from its
      // last checkpoint.
      job->status.set_state(v1::JOB_STATE_RESTARTING);
      job->status.set_reason("the coordinator restarted");
      EndLastAttempt(job->status, "the coordinator restarted");
      job->status.clear_worker_ids();
    }
    job->waiting_since = now;
    if (Terminal(*job)) job->finished_at = now;
    if (absl::Status held = HoldCheckpoints(*job); !held.ok())
      LM_LOG(WARNING) << "job " << id << ": " << held;
    order_[job->seq] = id;
    jobs_[id] = std::move(job);
  }
  LM_LOG(INFO) << "jobs: loaded " << loaded.size() << " records from " << dir << "; next id "
               << next_id_;
  return absl::OkStatus();
}

absl::Status JobScheduler::ValidateAgainstWorkers(const v1::SubmitJobRequest& request,
                                                  Clock::time_point now) const {
  if (request.wait_for_workers()) return absl::OkStatus();
  if (request.has_train()) {
    const int64_t live = registry_->CountLive(request.train().model(), now);
    if (request.train().world_size() > live) {
      return absl::FailedPreconditionError(absl::StrCat(
          "train.world_size ", request.train().world_size(), " is larger than the ", live,
          " live workers", request.train().model().empty() ? "" : " with that model",
          " (set wait_for_workers to queue it anyway)"));
    }
  } else {
    const int64_t live = registry_->CountLive(request.eval().model(), now);
    const int64_t need = std::max<int64_t>(1, request.eval().workers());
    if (need > live) {
      return absl::FailedPreconditionError(
          absl::StrCat("eval needs ", need, " workers but ", live,
                       " are live (set wait_for_workers to queue it anyway)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::JobStatus> JobScheduler::Submit(const v1::SubmitJobRequest& original,
                                                   const Caller& caller, Clock::time_point now) {
  v1::SubmitJobRequest request = original;
  if (request.has_train()) {
    v1::TrainSpec* train = request.mutable_train();
    if (!train->has_keep_last()) train->set_keep_last(checkpoints_->default_keep_last());
    LM_RETURN_IF_ERROR(ResolveTrainSpec(train));
    LM_RETURN_IF_ERROR(ResolveInitFrom(train));
  } else if (request.has_eval()) {
    LM_RETURN_IF_ERROR(ResolveEvalSpec(request.mutable_eval()));
    auto ckpt = checkpoints_->Find(request.eval().checkpoint());
    if (!ckpt.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("eval.checkpoint: ", ckpt.status().message()));
    }
    request.mutable_eval()->set_checkpoint(ckpt->checkpoint_id());
  } else {
    return absl::InvalidArgumentError("SubmitJob: give a train or an eval spec");
  }
  LM_RETURN_IF_ERROR(ValidateAgainstWorkers(request, now));

  absl::MutexLock lock(&mu_);
  if (static_cast<int64_t>(jobs_.size()) >= options_.max_jobs) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the coordinator holds ", jobs_.size(), " jobs (its limit); delete finished jobs first"));
  }
  auto job = std::make_unique<Job>();
  const bool train = request.has_train();
  job->seq = next_id_;
  const std::string id = absl::StrFormat("%s-%06d", train ? "train" : "eval", job->seq);
  // The id is spent before the record is written: a failure below never lets a later
  // job take it.
  if (absl::Status s = PersistNextId(job->seq + 1); !s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("nothing queued: cannot record the next job id: ", s.message()));
  }
  ++next_id_;
  v1::JobStatus& s = job->status;
  s.set_job_id(id);
  s.set_kind(train ? v1::JOB_KIND_TRAIN : v1::JOB_KIND_EVAL);
  s.set_state(v1::JOB_STATE_QUEUED);
  s.set_submitter(caller.name);
  s.set_created_unix_ms(absl::ToUnixMillis(absl::Now()));
  s.set_updated_unix_ms(s.created_unix_ms());
  if (train) {
    *s.mutable_train() = request.train();
  } else {
    *s.mutable_eval() = request.eval();
  }
  if (absl::Status held = HoldCheckpoints(*job); !held.ok()) {
    checkpoints_->Unpin(id);
    return absl::FailedPreconditionError(absl::StrCat("nothing queued: ", held.message()));
  }
  if (absl::Status written = Persist(*job); !written.ok()) {
    checkpoints_->Unpin(id);
    return absl::Status(
        written.code(),
        absl::StrCat("nothing queued: cannot write the job record: ", written.message()));
  }
  job->waiting_since = now;
  Job& ref = *job;
  order_[ref.seq] = id;
  jobs_[id] = std::move(job);
  LM_LOG(INFO) << "job " << id << " submitted by " << caller.name;
  Changed(ref, /*persist=*/false);
  TryStart(ref, now);
  return Snapshot(ref);
}

v1::JobStatus JobScheduler::Snapshot(const Job& job) const {
  v1::JobStatus s = job.status;
  for (std::string& note : checkpoints_->Quarantined(s.job_id())) {
    s.add_quarantined_checkpoints(std::move(note));
  }
  return s;
}

absl::StatusOr<v1::JobStatus> JobScheduler::Get(const std::string& job_id,
                                                bool include_history) const {
  LM_RETURN_IF_ERROR(CheckId("job_id", job_id));
  absl::MutexLock lock(&mu_);
  const Job* job = Find(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  v1::JobStatus s = Snapshot(*job);
  if (!include_history) s.clear_history();
  return s;
}

void JobScheduler::PersistAll() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, job] : jobs_) {
    absl::Status s = Persist(*job);
    if (!s.ok()) LM_LOG(ERROR) << "job " << id << ": record not written: " << s;
  }
}

absl::StatusOr<std::vector<v1::JobStatus>> JobScheduler::List(int64_t page_size,
                                                              const std::string& page_token,
                                                              std::string* next_page_token) const {
  if (page_size == 0) page_size = kDefaultPageSize;
  LM_RETURN_IF_ERROR(CheckRange("page_size", page_size, 1, kMaxPageSize));
  int64_t after = 0;
  if (!page_token.empty()) {
    LM_RETURN_IF_ERROR(CheckId("page_token", page_token));
    after = SeqOf(page_token);
    if (after <= 0)
      return absl::InvalidArgumentError("page_token is not one this coordinator gave");
  }
  absl::MutexLock lock(&mu_);
  std::vector<v1::JobStatus> out;
  next_page_token->clear();
  for (auto it = order_.upper_bound(after); it != order_.end(); ++it) {
    if (static_cast<int64_t>(out.size()) == page_size) {
      *next_page_token = out.back().job_id();
      break;
    }
    v1::JobStatus s = Snapshot(*Find(it->second));
    s.clear_history();
    s.clear_eval_report_json();
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<v1::JobStatus> JobScheduler::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::JobStatus> out;
  for (const auto& [seq, id] : order_) {
    v1::JobStatus s = Find(id)->status;
    s.clear_history();
    s.clear_eval_report_json();
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<JobScheduler::Job*> JobScheduler::FindManaged(const std::string& job_id,
                                                             const Caller& caller,
                                                             const char* verb) {
  LM_RETURN_IF_ERROR(CheckId("job_id", job_id));
  Job* job = Find(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  if (!caller.MayManage(job->status.submitter())) {
    return absl::PermissionDeniedError(absl::StrCat("job '", job_id, "' was submitted by '",
                                                    job->status.submitter(), "', not by '",
                                                    caller.name, "' (an admin may ", verb, " it)"));
  }
  return job;
}

absl::StatusOr<v1::JobStatus> JobScheduler::Cancel(const std::string& job_id,
                                                   const Caller& caller) {
  absl::MutexLock lock(&mu_);
  LM_ASSIGN_OR_RETURN(Job * job, FindManaged(job_id, caller, "cancel"));
  if (Terminal(*job)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job_id, "' already ended (", StateName(job->status.state()), ")"));
  }
  ReleaseMembers(*job, /*abort=*/true);
  job->status.set_state(v1::JOB_STATE_CANCELLED);
  job->status.set_reason(absl::StrCat("cancelled by ", caller.name));
  LM_LOG(INFO) << "job " << job_id << " cancelled by " << caller.name;
  Changed(*job, true);
  return Snapshot(*job);
}

absl::Status JobScheduler::Delete(const std::string& job_id, const Caller& caller) {
  absl::MutexLock lock(&mu_);
  LM_ASSIGN_OR_RETURN(Job * job, FindManaged(job_id, caller, "delete"));
  if (!Terminal(*job)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", job_id, "' is ", StateName(job->status.state()), ": cancel it first"));
  }
  Forget(job_id);
  LM_LOG(INFO) << "job " << job_id << " deleted by " << caller.name;
  return absl::OkStatus();
}

void JobScheduler::Forget(const std::string& job_id) {
  Job* job = Find(job_id);
  if (job == nullptr) return;
  rendezvous_->ErasePrefix(job_id + "/");
  if (!options_.state_dir.empty()) {
    std::remove((JobsDir(options_.state_dir) + "/" + job_id + ".json").c_str());
  }
  ++job->version;
  order_.erase(job->seq);
  jobs_.erase(job_id);
  changed_.SignalAll();  // watchers of it get NOT_FOUND
}

absl::StatusOr<v1::JobStatus> JobScheduler::WaitForChange(const std::string& job_id,
                                                          int64_t* version,
                                                          Clock::time_point deadline) {
  LM_RETURN_IF_ERROR(CheckId("job_id", job_id));
  absl::MutexLock lock(&mu_);
  while (true) {
    if (shutting_down_) return absl::UnavailableError("the coordinator is shutting down");
    const Job* job = Find(job_id);
    if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
    if (job->version != *version) {
      *version = job->version;
      v1::JobStatus s = Snapshot(*job);
      s.clear_history();
      return s;
    }
    if (changed_.WaitWithTimeout(&mu_, absl::FromChrono(deadline - Clock::now()))) {
      return absl::DeadlineExceededError("no change");
    }
  }
}

void JobScheduler::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  changed_.SignalAll();
}

void JobScheduler::OnHeartbeat(const v1::HeartbeatRequest& request) {
  const v1::TaskRef& ref = request.running();
  if (ref.job_id().empty()) return;
  absl::MutexLock lock(&mu_);
  Job* job = Find(ref.job_id());
  if (!CheckMember(job, ref, request.worker_id(), request.session_id()).ok()) return;
  bool changed = false;
  if (job->status.kind() == v1::JOB_KIND_TRAIN && ref.rank() == 0) {
    std::vector<v1::StepMetrics> accepted;
    for (const v1::StepMetrics& m : request.steps()) {
      // status.step restarts at the resumed step, so steps redone after a restart are
      // recorded again (the curve shows the redo).
      if (m.step() <= job->status.step()) continue;
      *job->status.add_history() = m;
      *job->status.mutable_last_step() = m;
      job->status.set_step(m.step());
      accepted.push_back(m);
      changed = true;
    }
    if (tensorboard_ != nullptr) {
      tensorboard_->OnSteps(ref.job_id(), ref.attempt(), job->status.resumed_from_step(), accepted);
    }
  } else if (job->status.kind() == v1::JOB_KIND_EVAL) {
    Member& member = job->members[ref.rank()];
    if (request.eval_images_done() >= 0 && member.eval_images_done != request.eval_images_done()) {
      member.eval_images_done = request.eval_images_done();
      int64_t done = 0;
      for (const Member& m : job->members) done += m.eval_images_done;
      job->status.set_eval_images_done(done);
      changed = true;
    }
  }
  if (changed) Changed(*job, false);
}

absl::Status JobScheduler::OnTaskResult(const v1::TaskResultRequest& request) {
  const v1::TaskRef& ref = request.ref();
  absl::MutexLock lock(&mu_);
  Job* job = Find(ref.job_id());
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", ref.job_id(), "'"));
  if (absl::Status s = CheckMember(job, ref, request.worker_id(), request.session_id()); !s.ok()) {
    return absl::FailedPreconditionError(s.message());
  }
  Member& member = job->members[ref.rank()];
  if (!request.ok()) {
    EndAttempt(*job,
               absl::StrCat("rank ", ref.rank(), " (", request.worker_id(), ") failed at step ",
                            request.step(), ": ", ForLog(request.error(), 4096)),
               request.retryable(), Clock::now());
    return absl::OkStatus();
  }
  member.done = true;
  member.eval_report_json = request.eval_report_json();
  registry_->Release(member.worker_id, member.session_id, ref, /*abort=*/false);
  for (const Member& m : job->members) {
    if (!m.done) {
      Changed(*job, false);
      return absl::OkStatus();
    }
  }
  rendezvous_->ErasePrefix(RendezvousPrefix(*job));
  if (job->status.kind() == v1::JOB_KIND_EVAL) {
    FinishEval(*job);
    return absl::OkStatus();
  }
  if (job->status.latest_checkpoint_step() != job->status.total_steps()) {
    job->status.set_state(v1::JOB_STATE_FAILED);
    job->status.set_reason(
        absl::StrCat("the ranks finished but the last checkpoint stored is step ",
                     job->status.latest_checkpoint_step(), " of ", job->status.total_steps()));
  } else {
    job->status.set_state(v1::JOB_STATE_SUCCEEDED);
    job->status.set_step(job->status.total_steps());
    LM_LOG(INFO) << "job " << job->status.job_id()
                 << " succeeded: " << job->status.latest_checkpoint_id();
  }
  Changed(*job, true);
  return absl::OkStatus();
}

void JobScheduler::FinishEval(Job& job) {
  std::vector<std::string> questions(job.status.eval().questions().begin(),
                                     job.status.eval().questions().end());
  EvalReport merged(questions);
  for (size_t r = 0; r < job.members.size(); ++r) {
    auto shard = EvalReport::FromJson(job.members[r].eval_report_json,
                                      absl::StrCat("rank ", r, "'s eval report"));
    absl::Status s = shard.ok() ? merged.Merge(*shard) : shard.status();
    if (!s.ok()) {
      job.status.set_state(v1::JOB_STATE_FAILED);
      job.status.set_reason(absl::StrCat("gathering the eval shards: ", s.message()));
      Changed(job, true);
      return;
    }
  }
  merged.metadata()["checkpoint"] = job.status.eval().checkpoint();
  merged.metadata()["images"] = std::to_string(job.eval_begin_end[1] - job.eval_begin_end[0]);
  merged.metadata()["workers"] = std::to_string(job.members.size());
  job.status.set_eval_report_json(merged.ToJson());
  job.status.set_eval_accuracy(merged.Accuracy());
  if (absl::Status s =
          checkpoints_->RecordEval(job.status.eval().checkpoint(), job.eval_checkpoint_sha256,
                                   job.status.job_id(), merged.Accuracy());
      !s.ok()) {
    LM_LOG(WARNING) << "job " << job.status.job_id()
                    << ": accuracy not recorded for keep_best: " << s;
  }
  if (tensorboard_ != nullptr) tensorboard_->OnEval(job.status.eval().checkpoint(), merged);
  job.status.set_eval_images_done(job.status.eval_images_total());
  job.status.set_state(v1::JOB_STATE_SUCCEEDED);
  LM_LOG(INFO) << "job " << job.status.job_id() << " succeeded: accuracy " << merged.Accuracy();
  Changed(job, true);
}

absl::StatusOr<v1::Shard> JobScheduler::GetShard(const v1::GetShardRequest& request) const {
  const v1::TaskRef& ref = request.ref();
  absl::MutexLock lock(&mu_);
  const Job* job = Find(ref.job_id());
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", ref.job_id(), "'"));
  if (job->status.kind() != v1::JOB_KIND_TRAIN || job->status.state() != v1::JOB_STATE_RUNNING ||
      ref.attempt() != job->status.attempt() || job->plan == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", ref.job_id(), "' attempt ", ref.attempt(), " is not a running training attempt"));
  }
  const int64_t world = static_cast<int64_t>(job->members.size());
  if (ref.rank() < 0 || ref.rank() >= world) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", ref.rank(), " is outside the group of ", world));
  }
  LM_RETURN_IF_ERROR(CheckMember(job, ref, request.worker_id(), request.session_id()));
  const DataPlan& plan = *job->plan;
  if (request.epoch() < 0 || request.epoch() > plan.EpochOfStep(plan.total_steps() - 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("epoch ", request.epoch(), " is outside the plan"));
  }
  const int64_t first = request.epoch() * plan.steps_per_epoch();
  const int64_t last = std::min(plan.total_steps(), first + plan.steps_per_epoch());
  v1::Shard shard;
  shard.set_epoch(request.epoch());
  for (int64_t step = first; step < last; ++step) {
    v1::StepShare* share = shard.add_steps();
    share->set_step(step);
    for (const PlannedSample& s : plan.RankSamples(step, ref.rank(), world)) {
      share->add_index(s.index);
      share->add_question(s.question);
      share->add_answer_template(s.answer_template);
    }
  }
  return shard;
}

absl::Status JobScheduler::CheckMember(const Job* job, const v1::TaskRef& ref,
                                       const std::string& worker_id,
                                       const std::string& session_id) const {
  if (job == nullptr || job->status.state() != v1::JOB_STATE_RUNNING ||
      ref.attempt() != job->status.attempt() || ref.rank() < 0 ||
      ref.rank() >= static_cast<int64_t>(job->members.size())) {
    return absl::PermissionDeniedError(absl::StrCat("job '", ref.job_id(), "' attempt ",
                                                    ref.attempt(), " rank ", ref.rank(),
                                                    " is not running"));
  }
  const Member& m = job->members[ref.rank()];
  if (m.worker_id != worker_id || m.session_id != session_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("job '", ref.job_id(), "' attempt ", ref.attempt(), " rank ", ref.rank(),
                     " is not held by worker '", ForLog(worker_id, 128), "' in this session"));
  }
  return absl::OkStatus();
}

absl::Status JobScheduler::CheckUploader(const v1::TaskRef& ref, const std::string& worker_id,
                                         const std::string& session_id, int64_t step) const {
  absl::MutexLock lock(&mu_);
  const Job* job = Find(ref.job_id());
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", ref.job_id(), "'"));
  if (job->status.kind() != v1::JOB_KIND_TRAIN || job->status.state() != v1::JOB_STATE_RUNNING ||
      ref.attempt() != job->status.attempt() || ref.rank() != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "only rank 0 of the running attempt of '", ref.job_id(),
        "' uploads checkpoints (got attempt ", ref.attempt(), " rank ", ref.rank(), ")"));
  }
  if (absl::Status s = CheckMember(job, ref, worker_id, session_id); !s.ok()) {
    return absl::FailedPreconditionError(s.message());
  }
  if (step < 1 || step > job->status.total_steps()) {
    return absl::FailedPreconditionError(absl::StrCat("step ", step, " is outside job '",
                                                      ref.job_id(), "''s plan of ",
                                                      job->status.total_steps(), " steps"));
  }
  return absl::OkStatus();
}

absl::Status JobScheduler::CheckRendezvousAccess(const std::string& key,
                                                 const std::string& worker_id,
                                                 const std::string& session_id) const {
  const size_t slash = key.find('/');
  if (slash == std::string::npos) {
    return absl::PermissionDeniedError("rendezvous: a key must start with its attempt's prefix");
  }
  absl::MutexLock lock(&mu_);
  const Job* job = Find(key.substr(0, slash));
  if (job != nullptr && job->status.state() == v1::JOB_STATE_RUNNING &&
      key.compare(0, RendezvousPrefix(*job).size(), RendezvousPrefix(*job)) == 0) {
    for (const Member& m : job->members) {
      if (m.worker_id == worker_id && m.session_id == session_id) return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError(absl::StrCat("rendezvous: '", ForLog(key, 128),
                                                  "' is not a key of a running attempt of worker '",
                                                  ForLog(worker_id, 128), "' in this session"));
}

void JobScheduler::OnCheckpointStoreFailed(const v1::TaskRef& ref, const absl::Status& error) {
  absl::MutexLock lock(&mu_);
  Job* job = Find(ref.job_id());
  if (job == nullptr || job->status.state() != v1::JOB_STATE_RUNNING ||
      ref.attempt() != job->status.attempt()) {
    return;
  }
  EndAttempt(*job,
             absl::StrCat("the coordinator could not store its checkpoint: ", error.message()),
             /*retryable=*/false, Clock::now());
}

void JobScheduler::OnCheckpointStored(const v1::CheckpointInfo& info, Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  Job* job = Find(info.job_id());
  if (job == nullptr) return;
  if (info.step() >= job->status.latest_checkpoint_step() ||
      job->status.latest_checkpoint_id().empty()) {
    job->status.set_latest_checkpoint_id(info.checkpoint_id());
    job->status.set_latest_checkpoint_step(info.step());
  }
  // The attempt has moved past the checkpoint it resumed from: that one may be pruned now.
  if (info.step() > job->status.resumed_from_step()) checkpoints_->Unpin(info.job_id() + "/resume");
  Changed(*job, true);
  if (!info.final()) MaybeGrow(*job, info.step(), now);
}

void JobScheduler::MaybeGrow(Job& job, int64_t checkpoint_step, Clock::time_point now) {
  v1::JobStatus& s = job.status;
  if (s.kind() != v1::JOB_KIND_TRAIN || s.state() != v1::JOB_STATE_RUNNING ||
      checkpoint_step >= s.total_steps()) {
    return;
  }
  const int64_t ranks = static_cast<int64_t>(job.members.size());
  const int64_t idle = static_cast<int64_t>(IdleFor(job, now).size());
  if (ranks >= s.train().world_size() || idle == 0) return;
  // The attempt ends here, at a step every rank can resume from, without counting as a
  // restart: nothing failed.
  const std::string reason = absl::StrCat("regrouped at the checkpoint of step ", checkpoint_step,
                                          " to grow: ", idle, " more worker(s) idle");
  ReleaseMembers(job, /*abort=*/true);
  EndLastAttempt(s, reason);
  s.set_state(v1::JOB_STATE_RESTARTING);
  s.set_reason(absl::StrCat("attempt ", s.attempt(), " ", reason));
  job.grow_from = ranks;
  job.grow_to = std::min(s.train().world_size(), ranks + idle);
  job.waiting_since = now;
  LM_LOG(INFO) << "job " << s.job_id() << ": " << s.reason();
  Changed(job, true);
  TryStart(job, now);
}

void JobScheduler::Tick(Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> expired;
  for (const auto& [seq, id] : order_) {
    Job& job = *Find(id);
    if (Terminal(job)) {
      if (options_.finished_job_ttl.count() > 0 &&
          now - job.finished_at > options_.finished_job_ttl) {
        expired.push_back(id);
      }
      continue;
    }
    if (job.status.state() == v1::JOB_STATE_RUNNING) {
      EndIfMemberLost(job, now);
      continue;
    }
    TryStart(job, now);
    if (job.status.state() == v1::JOB_STATE_RESTARTING &&
        now - job.waiting_since > options_.restart_wait) {
      job.status.set_state(v1::JOB_STATE_FAILED);
      const bool elastic = job.status.kind() == v1::JOB_KIND_TRAIN &&
                           MinWorldSize(job.status.train()) < job.status.train().world_size();
      job.status.set_reason(absl::StrCat(
          job.status.reason(), "; not enough workers came back within ",
          options_.restart_wait.count(), " ms",
          elastic ? absl::StrCat(" (min_world_size ", MinWorldSize(job.status.train()), ")")
                  : std::string()));
      LM_LOG(WARNING) << "job " << id << " failed: " << job.status.reason();
      Changed(job, true);
    }
  }
  for (const std::string& id : expired) {
    LM_LOG(INFO) << "job " << id << " expired (finished over " << options_.finished_job_ttl.count()
                 << " ms ago)";
    Forget(id);
  }
}

bool JobScheduler::EndIfMemberLost(Job& job, Clock::time_point now) {
  for (size_t rank = 0; rank < job.members.size(); ++rank) {
    const Member& m = job.members[rank];
    if (!m.done && !registry_->IsLive(m.worker_id, m.session_id, now)) {
      EndAttempt(job,
                 absl::StrCat("worker '", m.worker_id, "' (rank ", rank, ") was lost: ",
                              registry_->GoneReason(m.worker_id, m.session_id, now)),
                 /*retryable=*/true, now);
      return true;
    }
  }
  return false;
}

void JobScheduler::OnWorkerLeft(const std::string& worker_id, Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  for (const auto& [seq, id] : order_) {
    Job& job = *Find(id);
    if (job.status.state() != v1::JOB_STATE_RUNNING) continue;
    const bool member = std::any_of(job.members.begin(), job.members.end(),
                                    [&](const Member& m) { return m.worker_id == worker_id; });
    if (member) EndIfMemberLost(job, now);
  }
}

absl::Status JobScheduler::ResolveInitFrom(v1::TrainSpec* spec) const {
  const std::string ref = spec->init_from();
  if (ref.empty()) return absl::OkStatus();
  // A job id: its newest checkpoint that verifies; a checkpoint id: that one, verified.
  absl::StatusOr<v1::CheckpointInfo> info = ref.find('/') == std::string::npos
                                                ? checkpoints_->FindVerified(ref)
                                                : checkpoints_->Find(ref);
  if (info.ok() && ref.find('/') != std::string::npos) info = checkpoints_->Verify(*info);
  absl::StatusOr<ProjectorConfig> from = info.ok() ? checkpoints_->ReadProjectorConfig(*info)
                                                   : absl::StatusOr<ProjectorConfig>(info.status());
  if (!from.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("train.init_from '", ref, "': ", from.status().message()));
  }
  ProjectorConfig wanted = ProjectorFromSpec(*spec);
  wanted.output_dim = from->output_dim;  // the model's width: each worker checks its own
  if (absl::Status fits = CheckProjectorCompatible(*from, wanted, info->checkpoint_id());
      !fits.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("train.init_from: ", fits.message()));
  }
  spec->set_init_from(info->checkpoint_id());
  return absl::OkStatus();
}

absl::Status JobScheduler::HoldCheckpoints(const Job& job) {
  const v1::JobStatus& s = job.status;
  if (s.has_train()) {
    checkpoints_->SetRetention(s.job_id(), Retention{s.train().keep_last(), s.train().keep_best()});
  }
  if (Terminal(job)) return absl::OkStatus();
  const std::string& read = s.has_train() ? s.train().init_from() : s.eval().checkpoint();
  return read.empty() ? absl::OkStatus() : checkpoints_->Pin(read, s.job_id());
}

void JobScheduler::Fail(Job& job, const std::string& reason) {
  job.status.set_state(v1::JOB_STATE_FAILED);
  job.status.set_reason(reason);
  LM_LOG(WARNING) << "job " << job.status.job_id() << " failed: " << reason;
  Changed(job, true);
}

std::vector<WorkerRegistry::Candidate> JobScheduler::IdleFor(const Job& job,
                                                             Clock::time_point now) const {
  const bool train = job.status.kind() == v1::JOB_KIND_TRAIN;
  const std::string& model = train ? job.status.train().model() : job.status.eval().model();
  std::vector<WorkerRegistry::Candidate> idle;
  for (auto& c : registry_->Idle(now)) {
    if (ModelMatches(model, c.info)) idle.push_back(std::move(c));
  }
  return idle;
}

std::vector<WorkerRegistry::Candidate> JobScheduler::TrainGroup(
    const Job& job, std::vector<WorkerRegistry::Candidate> idle, Clock::time_point now,
    std::string* why) const {
  const v1::JobStatus& s = job.status;
  const int64_t world = s.train().world_size();
  const int64_t n = std::min<int64_t>(world, static_cast<int64_t>(idle.size()));
  const bool waited =
      s.state() == v1::JOB_STATE_RESTARTING && now - job.waiting_since >= options_.restart_wait;
  if (n < world && !(job.grow_to > 0 && n >= job.grow_to) &&
      !(waited && n >= MinWorldSize(s.train()))) {
    return {};
  }
  idle.resize(n);
  if (s.attempt() == 0) {
    *why = "submitted";
  } else if (job.grow_from > 0 && n > job.grow_from) {
    *why = absl::StrCat("grew from ", job.grow_from, " to ", n, " ranks at the checkpoint of step ",
                        s.latest_checkpoint_step(),
                        n < world ? absl::StrCat(" (world_size ", world, ")") : std::string());
  } else if (n < world) {
    *why = absl::StrCat("shrunk to ", n, " of ", world, " ranks (min_world_size ",
                        MinWorldSize(s.train()),
                        "), none other idle within restart_wait; restart: ", s.reason());
  } else {
    *why = absl::StrCat("restart: ", s.reason());
  }
  return idle;
}

void JobScheduler::TryStart(Job& job, Clock::time_point now) {
  const bool train = job.status.kind() == v1::JOB_KIND_TRAIN;
  std::vector<WorkerRegistry::Candidate> idle = IdleFor(job, now);
  if (train) {
    std::string why;
    std::vector<WorkerRegistry::Candidate> group = TrainGroup(job, std::move(idle), now, &why);
    if (group.empty()) return;
    StartTrain(job, std::move(group), why);
  } else {
    const int64_t wanted = job.status.eval().workers();
    if (idle.empty() || static_cast<int64_t>(idle.size()) < wanted) return;
    if (wanted > 0) idle.resize(wanted);
    StartEval(job, std::move(idle));
  }
}

void JobScheduler::RecordAttempt(Job& job, int64_t world, const std::string& why) {
  v1::JobStatus& s = job.status;
  v1::Attempt* a = s.add_attempts();
  a->set_attempt(s.attempt());
  a->set_world_size(world);
  a->set_from_step(s.resumed_from_step());
  a->set_why(ForLog(why, 2048));
  a->set_started_unix_ms(absl::ToUnixMillis(absl::Now()));
  if (s.attempts_size() > kMaxAttemptsShown) {
    s.mutable_attempts()->DeleteSubrange(0, s.attempts_size() - kMaxAttemptsShown);
  }
}

void JobScheduler::StartTrain(Job& job, std::vector<WorkerRegistry::Candidate> group,
                              const std::string& why) {
  v1::JobStatus& s = job.status;
  v1::TrainSpec spec = s.train();
  int64_t images = group[0].info.train_images();
  for (const auto& c : group) images = std::min(images, c.info.train_images());
  if (images <= 0) {
    Fail(job, "the workers hold no training digits");
    return;
  }
  const int64_t digits = spec.train_digits() < 0 ? images : std::min(spec.train_digits(), images);
  spec.set_train_digits(digits);
  const int64_t world = static_cast<int64_t>(group.size());
  DataPlanConfig plan;
  plan.num_samples = digits;
  // From the spec's world_size, not the group's: an elastic job's smaller group keeps the
  // global batch and so the data order.
  auto global_batch = GlobalBatch(spec, spec.world_size());
  plan.global_batch = global_batch.ok() ? *global_batch : 0;
  plan.epochs = spec.epochs();
  plan.max_steps = spec.max_steps();
  plan.seed = spec.seed();
  plan.num_questions = std::max(1, spec.questions_size());
  plan.num_answer_templates = std::max(1, spec.answer_templates_size());
  if (absl::Status valid = global_batch.ok() ? plan.Validate() : global_batch.status();
      !valid.ok()) {
    Fail(job, absl::StrCat("cannot plan the job's data: ", valid.message()));
    return;
  }
  job.plan = std::make_unique<DataPlan>(plan);
  s.set_total_steps(job.plan->total_steps());
  s.set_attempt(s.attempt() + 1);
  s.set_state(v1::JOB_STATE_RUNNING);
  s.clear_worker_ids();
  // The newest checkpoint that verifies: a damaged one is set aside, never resumed from.
  auto resume = checkpoints_->FindVerified(s.job_id());
  s.set_resumed_from_step(resume.ok() ? resume->step() : 0);
  s.set_step(resume.ok() ? resume->step() : 0);
  // Replaces the previous attempt's pin; FindVerified just found it under this lock.
  if (resume.ok()) checkpoints_->Pin(resume->checkpoint_id(), s.job_id() + "/resume").IgnoreError();
  job.members.clear();
  for (int64_t rank = 0; rank < world; ++rank) {
    const auto& c = group[rank];
    v1::Task task;
    task.mutable_ref()->set_job_id(s.job_id());
    task.mutable_ref()->set_attempt(s.attempt());
    task.mutable_ref()->set_rank(rank);
    v1::TrainTask* t = task.mutable_train();
    *t->mutable_spec() = spec;
    t->set_world_size(world);
    t->set_rendezvous_prefix(RendezvousPrefix(job));
    if (resume.ok()) t->set_resume_checkpoint_id(resume->checkpoint_id());
    t->set_collective_timeout_ms(options_.collective_timeout.count());
    registry_->Assign(c.worker_id, c.session_id, task);
    job.members.push_back({c.worker_id, c.session_id});
    s.add_worker_ids(c.worker_id);
  }
  RecordAttempt(job, world, why);
  job.grow_from = job.grow_to = 0;
  LM_LOG(INFO) << "job " << s.job_id() << " attempt " << s.attempt() << " started on " << world
               << " of " << spec.world_size() << " workers, " << s.total_steps()
               << " steps, from step " << s.step() << " (" << why << ")";
  Changed(job, true);
}

void JobScheduler::StartEval(Job& job, std::vector<WorkerRegistry::Candidate> group) {
  v1::JobStatus& s = job.status;
  int64_t images = group[0].info.test_images();
  for (const auto& c : group) images = std::min(images, c.info.test_images());
  const int64_t n = s.eval().eval_digits() < 0 ? images : std::min(s.eval().eval_digits(), images);
  if (n <= 0) {
    Fail(job, "the workers hold no test digits");
    return;
  }
  auto ckpt = checkpoints_->Find(s.eval().checkpoint());
  if (ckpt.ok()) ckpt = checkpoints_->Verify(*ckpt);
  if (!ckpt.ok()) {
    Fail(job, absl::StrCat("checkpoint ", s.eval().checkpoint(), ": ", ckpt.status().message()));
    return;
  }
  if (static_cast<int64_t>(group.size()) > n) group.resize(n);
  const int64_t k = static_cast<int64_t>(group.size());
  job.eval_begin_end[0] = 0;
  job.eval_begin_end[1] = n;
  s.set_attempt(s.attempt() + 1);
  s.set_state(v1::JOB_STATE_RUNNING);
  s.clear_worker_ids();
  s.set_eval_images_total(n * s.eval().questions_size());
  s.set_eval_images_done(0);
  job.members.clear();
  const std::string checkpoint_sha256 = ckpt->sha256();
  job.eval_checkpoint_sha256 = checkpoint_sha256;
  for (int64_t rank = 0; rank < k; ++rank) {
    // Contiguous ranges whose sizes differ by at most one, in rank order: merging the
    // shards' reports gives the single-process report.
    const int64_t begin = rank * n / k, end = (rank + 1) * n / k;
    v1::Task task;
    task.mutable_ref()->set_job_id(s.job_id());
    task.mutable_ref()->set_attempt(s.attempt());
    task.mutable_ref()->set_rank(rank);
    v1::EvalTask* t = task.mutable_eval();
    *t->mutable_spec() = s.eval();
    t->set_checkpoint_id(s.eval().checkpoint());
    t->set_checkpoint_sha256(checkpoint_sha256);
    t->set_begin(begin);
    t->set_end(end);
    // With k > 1 the ranks meet as a group to share one download of the projector.
    t->set_world_size(k);
    t->set_rendezvous_prefix(RendezvousPrefix(job));
    t->set_collective_timeout_ms(options_.collective_timeout.count());
    registry_->Assign(group[rank].worker_id, group[rank].session_id, task);
    job.members.push_back({group[rank].worker_id, group[rank].session_id});
    s.add_worker_ids(group[rank].worker_id);
  }
  RecordAttempt(
      job, k, s.attempt() == 1 ? std::string("submitted") : absl::StrCat("restart: ", s.reason()));
  LM_LOG(INFO) << "job " << s.job_id() << " attempt " << s.attempt() << ": " << n
               << " test digits over " << k << " workers";
  Changed(job, true);
}

void JobScheduler::ReleaseMembers(Job& job, bool abort) {
  v1::TaskRef ref;
  ref.set_job_id(job.status.job_id());
  ref.set_attempt(job.status.attempt());
  for (size_t rank = 0; rank < job.members.size(); ++rank) {
    const Member& m = job.members[rank];
    if (m.done) continue;
    ref.set_rank(static_cast<int64_t>(rank));
    registry_->Release(m.worker_id, m.session_id, ref, abort);
  }
  rendezvous_->ErasePrefix(RendezvousPrefix(job));
  job.members.clear();
  job.status.clear_worker_ids();
}

void JobScheduler::EndAttempt(Job& job, const std::string& reason, bool retryable,
                              Clock::time_point now) {
  ReleaseMembers(job, /*abort=*/true);
  v1::JobStatus& s = job.status;
  EndLastAttempt(s, reason);
  const int64_t max_restarts =
      s.kind() == v1::JOB_KIND_TRAIN ? s.train().max_restarts() : s.eval().max_restarts();
  if (retryable && s.restarts() < max_restarts) {
    s.set_restarts(s.restarts() + 1);
    s.set_state(v1::JOB_STATE_RESTARTING);
    s.set_reason(absl::StrCat("attempt ", s.attempt(), " ended: ", reason));
    job.waiting_since = now;
    LM_LOG(WARNING) << "job " << s.job_id() << " restarting (" << s.restarts() << " of "
                    << max_restarts << "): " << reason;
  } else {
    s.set_state(v1::JOB_STATE_FAILED);
    s.set_reason(absl::StrCat("attempt ", s.attempt(), " ended: ", reason,
                              retryable
                                  ? absl::StrCat("; max_restarts (", max_restarts, ") reached")
                                  : std::string("; not retryable")));
    LM_LOG(WARNING) << "job " << s.job_id() << " failed: " << s.reason();
  }
  Changed(job, true);
}

}  // namespace llava
