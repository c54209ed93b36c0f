#include "coordinator/coordinator_service.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/elapsed.h"
#include "common/job_spec.h"
#include "common/log.h"
#include "common/net/security.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace llava {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

LongPollGate::Ticket::Ticket(LongPollGate* gate) : gate_(gate) {
  if (gate_->in_flight_.fetch_add(1) >= gate_->max_) {
    gate_->in_flight_.fetch_sub(1);
    gate_ = nullptr;
  }
}

LongPollGate::Ticket::~Ticket() {
  if (gate_ != nullptr) gate_->in_flight_.fetch_sub(1);
}

namespace {

using std::chrono::milliseconds;

// A waiting call re-checks its client, the shutdown and its own conditions this often.
constexpr milliseconds kWaitSlice{500};
constexpr int kMaxHeartbeatSteps = 10000;
constexpr size_t kMaxSessionBytes = 64;
constexpr size_t kMaxReasonBytes = 1024;
constexpr size_t kMaxErrorBytes = 64 << 10;
constexpr int64_t kMaxPageSize = 1000;

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// PERMISSION_DENIED unless the caller holds one of `roles`.
absl::Status Require(const grpc::ServerContext* context, const ServiceOptions& o, unsigned roles,
                     const char* method, Caller* out = nullptr) {
  Caller caller = CallerOf(*context, o.tokens_required);
  if ((caller.roles & roles) == 0) {
    return absl::PermissionDeniedError(absl::StrCat(method, ": the caller '", caller.name, "' (",
                                                    RolesName(caller.roles),
                                                    ") lacks the role: ", RolesName(roles)));
  }
  if (out != nullptr) *out = std::move(caller);
  return absl::OkStatus();
}

// The worker's identity fields of a call made after registration.
absl::Status CheckSessionFields(const char* method, const std::string& worker_id,
                                const std::string& session_id) {
  LM_RETURN_IF_ERROR(CheckId(absl::StrCat(method, ": worker_id"), worker_id));
  return CheckText(absl::StrCat(method, ": session_id"), session_id, kMaxSessionBytes,
                   /*allow_empty=*/false);
}

absl::Status CheckTaskRef(const char* method, const v1::TaskRef& ref) {
  LM_RETURN_IF_ERROR(CheckId(absl::StrCat(method, ": ref.job_id"), ref.job_id()));
  LM_RETURN_IF_ERROR(
      CheckRange(absl::StrCat(method, ": ref.attempt"), ref.attempt(), 1, INT32_MAX));
  return CheckRange(absl::StrCat(method, ": ref.rank"), ref.rank(), 0,
                    JobLimits::kMaxWorldSize - 1);
}

absl::Status CheckHeartbeat(const v1::HeartbeatRequest& r) {
  LM_RETURN_IF_ERROR(CheckSessionFields("Heartbeat", r.worker_id(), r.session_id()));
  if (r.wait_ms() < 0) return absl::InvalidArgumentError("Heartbeat: wait_ms must be >= 0");
  if (r.has_running()) LM_RETURN_IF_ERROR(CheckTaskRef("Heartbeat: running", r.running()));
  if (r.steps_size() > kMaxHeartbeatSteps) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Heartbeat: ", r.steps_size(), " steps, over the limit of ", kMaxHeartbeatSteps));
  }
  return CheckRange("Heartbeat: eval_images_done", r.eval_images_done(), 0,
                    JobLimits::kMaxDigits * JobLimits::kMaxPhrasings);
}

absl::Status CheckPage(const char* method, int64_t page_size) {
  return CheckRange(absl::StrCat(method, ": page_size"), page_size, 0, kMaxPageSize);
}

}  // namespace

// ---- JobService

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* context,
                                       const v1::SubmitJobRequest* request,
                                       v1::JobStatus* response) {
  Caller caller;
  if (auto s = Require(context, o_, kRoleClient, "SubmitJob", &caller); !s.ok()) return ToGrpc(s);
  auto status = c_.scheduler->Submit(*request, caller, Clock::now());
  if (!status.ok()) return ToGrpc(status.status());
  *response = *status;
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                                    v1::JobStatus* response) {
  if (auto s = Require(context, o_, kRoleClient, "GetJob"); !s.ok()) return ToGrpc(s);
  if (request->job_id().empty()) return Invalid("GetJob: job_id is empty");
  auto status = c_.scheduler->Get(request->job_id(), request->include_history());
  if (!status.ok()) return ToGrpc(status.status());
  *response = *status;
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context,
                                      const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobStatus>* writer) {
  if (auto s = Require(context, o_, kRoleClient, "WatchJob"); !s.ok()) return ToGrpc(s);
  if (request->job_id().empty()) return Invalid("WatchJob: job_id is empty");
  if (auto s = CheckId("WatchJob: job_id", request->job_id()); !s.ok()) return ToGrpc(s);
  LongPollGate::Ticket ticket(c_.long_polls);
  if (!ticket.ok()) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("WatchJob: ", c_.long_polls->max(),
                                     " waiting calls are open (the limit); poll GetJob instead"));
  }
  const auto end = Clock::now() + o_.max_watch;
  int64_t version = -1;
  while (!context->IsCancelled() && Clock::now() < end) {
    // Short waits so that a client that went away is noticed.
    auto status = c_.scheduler->WaitForChange(request->job_id(), &version,
                                              std::min(end, Clock::now() + kWaitSlice));
    if (absl::IsDeadlineExceeded(status.status())) continue;
    if (!status.ok()) return ToGrpc(status.status());
    if (!writer->Write(*status)) return grpc::Status::OK;  // the client went away
    if (IsTerminal(status->state())) return grpc::Status::OK;
  }
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context,
                                      const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  if (auto s = Require(context, o_, kRoleClient, "ListJobs"); !s.ok()) return ToGrpc(s);
  if (auto s = CheckPage("ListJobs", request->page_size()); !s.ok()) return ToGrpc(s);
  auto jobs = c_.scheduler->List(request->page_size(), request->page_token(),
                                 response->mutable_next_page_token());
  if (!jobs.ok()) return ToGrpc(jobs.status());
  for (v1::JobStatus& s : *jobs) *response->add_jobs() = std::move(s);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context,
                                       const v1::CancelJobRequest* request,
                                       v1::JobStatus* response) {
  Caller caller;
  if (auto s = Require(context, o_, kRoleClient, "CancelJob", &caller); !s.ok()) return ToGrpc(s);
  if (request->job_id().empty()) return Invalid("CancelJob: job_id is empty");
  auto status = c_.scheduler->Cancel(request->job_id(), caller);
  if (!status.ok()) return ToGrpc(status.status());
  *response = *status;
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::DeleteJob(grpc::ServerContext* context,
                                       const v1::DeleteJobRequest* request,
                                       v1::DeleteJobResponse*) {
  Caller caller;
  if (auto s = Require(context, o_, kRoleClient, "DeleteJob", &caller); !s.ok()) return ToGrpc(s);
  if (request->job_id().empty()) return Invalid("DeleteJob: job_id is empty");
  return ToGrpc(c_.scheduler->Delete(request->job_id(), caller));
}

// ---- WorkerService

grpc::Status WorkerServiceImpl::RegisterWorker(grpc::ServerContext* context,
                                               const v1::RegisterWorkerRequest* request,
                                               v1::RegisterWorkerResponse* response) {
  if (auto s = Require(context, o_, kRoleWorker, "RegisterWorker"); !s.ok()) return ToGrpc(s);
  auto session = c_.registry->Register(request->info(), Clock::now());
  if (!session.ok()) return ToGrpc(session.status());
  LM_LOG(INFO) << "worker " << request->info().worker_id() << " registered ("
               << ForLog(request->info().device(), 64) << ", "
               << ForLog(request->info().model(), 256) << ")";
  response->set_session_id(*session);
  response->set_heartbeat_interval_ms(o_.heartbeat_interval.count());
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* context,
                                          const v1::HeartbeatRequest* request,
                                          v1::HeartbeatResponse* response) {
  if (auto s = Require(context, o_, kRoleWorker, "Heartbeat"); !s.ok()) return ToGrpc(s);
  if (auto s = CheckHeartbeat(*request); !s.ok()) return ToGrpc(s);
  auto reply = c_.registry->Heartbeat(*request, Clock::now());
  if (!reply.ok()) return ToGrpc(reply.status());
  // Metrics first: the long poll below must not delay the job's progress.
  c_.scheduler->OnHeartbeat(*request);
  if (!reply->has_task() && reply->abort_size() == 0 && request->wait_ms() > 0 &&
      !c_.stopping->load()) {
    // Over the gate's limit the worker simply polls again after its interval.
    LongPollGate::Ticket ticket(c_.long_polls);
    if (ticket.ok()) {
      const auto wait = std::min(milliseconds(request->wait_ms()), o_.heartbeat_interval);
      reply = c_.registry->WaitForMail(request->worker_id(), request->session_id(),
                                       Clock::now() + wait);
      if (!reply.ok()) return ToGrpc(reply.status());
    }
  }
  *response = *reply;
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportTaskResult(grpc::ServerContext* context,
                                                 const v1::TaskResultRequest* request,
                                                 v1::TaskResultResponse*) {
  if (auto s = Require(context, o_, kRoleWorker, "ReportTaskResult"); !s.ok()) return ToGrpc(s);
  absl::Status s =
      CheckSessionFields("ReportTaskResult", request->worker_id(), request->session_id());
  if (s.ok()) s = CheckTaskRef("ReportTaskResult", request->ref());
  if (s.ok() && request->error().size() > kMaxErrorBytes) {
    s = absl::InvalidArgumentError(absl::StrCat("ReportTaskResult: error is ",
                                                request->error().size(),
                                                " bytes, over the limit of ", kMaxErrorBytes));
  }
  if (s.ok()) s = CheckRange("ReportTaskResult: step", request->step(), 0, JobLimits::kMaxSteps);
  if (s.ok()) s = c_.registry->CheckSession(request->worker_id(), request->session_id());
  if (s.ok()) s = c_.scheduler->OnTaskResult(*request);
  return ToGrpc(s);
}

grpc::Status WorkerServiceImpl::GetShard(grpc::ServerContext* context,
                                         const v1::GetShardRequest* request, v1::Shard* response) {
  if (auto s = Require(context, o_, kRoleWorker, "GetShard"); !s.ok()) return ToGrpc(s);
  absl::Status s = CheckSessionFields("GetShard", request->worker_id(), request->session_id());
  if (s.ok()) s = CheckTaskRef("GetShard", request->ref());
  if (!s.ok()) return ToGrpc(s);
  auto shard = c_.scheduler->GetShard(*request);
  if (!shard.ok()) return ToGrpc(shard.status());
  *response = std::move(*shard);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ListWorkers(grpc::ServerContext* context,
                                            const v1::ListWorkersRequest* request,
                                            v1::ListWorkersResponse* response) {
  if (auto s = Require(context, o_, kRoleClient | kRoleWorker, "ListWorkers"); !s.ok())
    return ToGrpc(s);
  if (auto s = CheckPage("ListWorkers", request->page_size()); !s.ok()) return ToGrpc(s);
  if (auto s = CheckIdOrEmpty("ListWorkers: page_token", request->page_token()); !s.ok())
    return ToGrpc(s);
  const int64_t limit = request->page_size() == 0 ? 100 : request->page_size();
  // One more than the page tells whether another page follows.
  std::vector<v1::WorkerStatus> workers =
      c_.registry->List(Clock::now(), request->page_token(), limit + 1);
  if (static_cast<int64_t>(workers.size()) > limit) {
    workers.resize(limit);
    response->set_next_page_token(workers.back().info().worker_id());
  }
  for (v1::WorkerStatus& w : workers) *response->add_workers() = std::move(w);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::LeaveWorker(grpc::ServerContext* context,
                                            const v1::LeaveWorkerRequest* request,
                                            v1::LeaveWorkerResponse*) {
  if (auto s = Require(context, o_, kRoleWorker, "LeaveWorker"); !s.ok()) return ToGrpc(s);
  absl::Status s = CheckSessionFields("LeaveWorker", request->worker_id(), request->session_id());
  if (s.ok() && request->reason().size() > kMaxReasonBytes) {
    s = absl::InvalidArgumentError(
        absl::StrCat("LeaveWorker: reason is over ", kMaxReasonBytes, " bytes"));
  }
  if (s.ok())
    s = c_.registry->Leave(request->worker_id(), request->session_id(), request->reason());
  if (!s.ok()) return ToGrpc(s);
  c_.scheduler->OnWorkerLeft(request->worker_id(), Clock::now());
  LM_LOG(INFO) << "worker " << request->worker_id() << " left: "
               << (request->reason().empty() ? "(no reason given)"
                                             : ForLog(request->reason(), 256));
  return grpc::Status::OK;
}

// ---- RendezvousService

grpc::Status RendezvousServiceImpl::Set(grpc::ServerContext* context,
                                        const v1::StoreSetRequest* request, v1::StoreSetResponse*) {
  if (auto s = Require(context, o_, kRoleWorker, "rendezvous Set"); !s.ok()) return ToGrpc(s);
  absl::Status s =
      CheckSessionFields("rendezvous Set", request->worker_id(), request->session_id());
  if (s.ok())
    s = c_.scheduler->CheckRendezvousAccess(request->key(), request->worker_id(),
                                            request->session_id());
  if (s.ok()) s = c_.rendezvous->Set(request->key(), request->value());
  return ToGrpc(s);
}

grpc::Status RendezvousServiceImpl::Get(grpc::ServerContext* context,
                                        const v1::StoreGetRequest* request,
                                        v1::StoreGetResponse* response) {
  if (auto s = Require(context, o_, kRoleWorker, "rendezvous Get"); !s.ok()) return ToGrpc(s);
  if (request->key().empty()) return Invalid("rendezvous Get: key is empty");
  if (request->wait_ms() < 0) return Invalid("rendezvous Get: wait_ms must be >= 0");
  if (auto s = CheckSessionFields("rendezvous Get", request->worker_id(), request->session_id());
      !s.ok()) {
    return ToGrpc(s);
  }
  auto access = [&] {
    return c_.scheduler->CheckRendezvousAccess(request->key(), request->worker_id(),
                                               request->session_id());
  };
  if (auto s = access(); !s.ok()) return ToGrpc(s);
  // Never wait past the client's own deadline or the server's bound.
  auto wait = std::min(milliseconds(request->wait_ms()), o_.max_store_wait);
  const auto until_deadline = std::chrono::duration_cast<milliseconds>(
      context->deadline() - std::chrono::system_clock::now());
  if (until_deadline.count() > 0) wait = std::min(wait, until_deadline);
  std::optional<LongPollGate::Ticket> ticket;
  if (wait.count() > 0) {
    ticket.emplace(c_.long_polls);
    if (!ticket->ok()) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("rendezvous Get: ", c_.long_polls->max(),
                                       " waiting calls are open (the limit)"));
    }
  }
  const auto end = Clock::now() + wait;
  while (true) {
    const auto slice = std::max(
        milliseconds(0),
        std::min(kWaitSlice, std::chrono::duration_cast<milliseconds>(end - Clock::now())));
    auto value = c_.rendezvous->Get(request->key(), slice);
    if (value.ok()) {
      response->set_value(std::move(*value));
      return grpc::Status::OK;
    }
    if (!absl::IsDeadlineExceeded(value.status())) return ToGrpc(value.status());
    if (Clock::now() >= end) {
      return ToGrpc(absl::DeadlineExceededError(absl::StrCat(
          "rendezvous: '", ForLog(request->key(), 128), "' not set within ", wait.count(), " ms")));
    }
    if (context->IsCancelled())
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    if (c_.stopping->load()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the coordinator is shutting down");
    }
    // The attempt may have ended meanwhile: its keys will never come.
    if (auto s = access(); !s.ok()) {
      return grpc::Status(grpc::StatusCode::CANCELLED,
                          absl::StrCat("rendezvous Get: ", s.message()));
    }
  }
}

// ---- CheckpointService

grpc::Status CheckpointServiceImpl::UploadCheckpoint(
    grpc::ServerContext* context, grpc::ServerReader<v1::CheckpointChunk>* reader,
    v1::CheckpointInfo* response) {
  if (auto s = Require(context, o_, kRoleWorker, "UploadCheckpoint"); !s.ok()) return ToGrpc(s);
  v1::CheckpointChunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) {
    return Invalid("UploadCheckpoint: the first chunk must carry the header");
  }
  const auto start = std::chrono::steady_clock::now();
  const v1::CheckpointHeader header = chunk.header();
  if (header.total_bytes() <= 0 || header.total_bytes() > o_.max_checkpoint_bytes) {
    return Invalid(absl::StrCat("UploadCheckpoint: total_bytes ", header.total_bytes(),
                                " is outside (0, ", o_.max_checkpoint_bytes, "]"));
  }
  if (header.sha256().size() != 64)
    return Invalid("UploadCheckpoint: sha256 must be 64 hex digits");
  absl::Status allowed =
      CheckSessionFields("UploadCheckpoint", header.worker_id(), header.session_id());
  if (allowed.ok()) allowed = CheckTaskRef("UploadCheckpoint", header.ref());
  if (allowed.ok()) allowed = c_.registry->CheckSession(header.worker_id(), header.session_id());
  if (allowed.ok()) {
    allowed = c_.scheduler->CheckUploader(header.ref(), header.worker_id(), header.session_id(),
                                          header.step());
  }
  if (!allowed.ok()) return ToGrpc(allowed);
  std::string bytes = std::move(*chunk.mutable_data());
  while (reader->Read(&chunk)) {
    if (chunk.has_header()) return Invalid("UploadCheckpoint: a header after the first chunk");
    if (static_cast<int64_t>(bytes.size() + chunk.data().size()) > header.total_bytes()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS,
                          "UploadCheckpoint: more bytes than total_bytes; nothing stored");
    }
    bytes += chunk.data();
  }
  if (static_cast<int64_t>(bytes.size()) != header.total_bytes()) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        absl::StrCat("UploadCheckpoint: got ", bytes.size(), " of ",
                                     header.total_bytes(), " bytes; nothing stored"));
  }
  auto info = c_.checkpoints->Put(header.ref().job_id(), header.step(), header.final(), bytes,
                                  header.sha256());
  if (!info.ok()) {
    // A digest mismatch is the transfer's fault (the attempt may retry); anything else is
    // the store's: a full disk or an I/O error would fail the same steps again.
    if (!absl::IsDataLoss(info.status()) && !absl::IsInvalidArgument(info.status())) {
      c_.scheduler->OnCheckpointStoreFailed(header.ref(), info.status());
    }
    return ToGrpc(info.status());
  }
  c_.scheduler->OnCheckpointStored(*info, Clock::now());
  c_.metrics->RecordCheckpoint("upload", "full", static_cast<int64_t>(bytes.size()),
                               SecondsSince(start));
  LM_LOG(INFO) << "checkpoint " << info->checkpoint_id() << " stored (" << bytes.size()
               << " bytes)";
  *response = *info;
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::DownloadCheckpoint(
    grpc::ServerContext* context, const v1::DownloadCheckpointRequest* request,
    grpc::ServerWriter<v1::CheckpointChunk>* writer) {
  if (auto s = Require(context, o_, kRoleClient | kRoleWorker, "DownloadCheckpoint"); !s.ok()) {
    return ToGrpc(s);
  }
  if (request->checkpoint().empty()) return Invalid("DownloadCheckpoint: checkpoint is empty");
  if (auto s = CheckCheckpointRef("DownloadCheckpoint: checkpoint", request->checkpoint());
      !s.ok()) {
    return ToGrpc(s);
  }
  const auto start = std::chrono::steady_clock::now();
  auto info = c_.checkpoints->Find(request->checkpoint());
  if (!info.ok()) return ToGrpc(info.status());
  v1::CheckpointChunk chunk;
  v1::CheckpointHeader* header = chunk.mutable_header();
  header->set_checkpoint_id(info->checkpoint_id());
  header->set_step(info->step());
  header->set_final(info->final());
  header->mutable_ref()->set_job_id(info->job_id());
  header->set_projector_only(request->projector_only());
  std::shared_ptr<const CheckpointStore::Derived> derived;
  absl::StatusOr<std::string> full;
  const std::string* bytes = nullptr;
  if (request->projector_only()) {
    auto d = c_.checkpoints->ReadProjectorOnly(*info);
    if (!d.ok()) return ToGrpc(d.status());
    derived = std::move(*d);
    bytes = &derived->bytes;
    header->set_sha256(derived->sha256);
  } else {
    full = c_.checkpoints->Read(*info);
    if (!full.ok()) return ToGrpc(full.status());
    bytes = &*full;
    header->set_sha256(info->sha256());
  }
  header->set_total_bytes(static_cast<int64_t>(bytes->size()));
  const size_t n = bytes->size(), step = static_cast<size_t>(o_.checkpoint_chunk_bytes);
  for (size_t off = 0; off < n || off == 0; off += step) {
    if (context->IsCancelled())
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    chunk.set_data(bytes->substr(off, step));
    if (!writer->Write(chunk)) return grpc::Status::OK;
    chunk.clear_header();
    if (n == 0) break;
  }
  c_.metrics->RecordCheckpoint("download", request->projector_only() ? "projector_only" : "full",
                               static_cast<int64_t>(n), SecondsSince(start));
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::ListCheckpoints(grpc::ServerContext* context,
                                                    const v1::ListCheckpointsRequest* request,
                                                    v1::ListCheckpointsResponse* response) {
  if (auto s = Require(context, o_, kRoleClient | kRoleWorker, "ListCheckpoints"); !s.ok()) {
    return ToGrpc(s);
  }
  if (auto s = CheckIdOrEmpty("ListCheckpoints: job_id", request->job_id()); !s.ok())
    return ToGrpc(s);
  for (auto& info : c_.checkpoints->List(request->job_id())) *response->add_checkpoints() = info;
  return grpc::Status::OK;
}

}  // namespace llava
