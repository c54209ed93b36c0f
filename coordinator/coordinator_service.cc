#include "coordinator/coordinator_service.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/sha256.h"

namespace llava {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace {

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

// ---- JobService

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                                       v1::JobStatus* response) {
  auto status = c_.scheduler->Submit(*request, Clock::now());
  if (!status.ok()) return ToGrpc(status.status());
  *response = *status;
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                                    v1::JobStatus* response) {
  if (request->job_id().empty()) return Invalid("GetJob: job_id is empty");
  auto status = c_.scheduler->Get(request->job_id(), request->include_history());
  if (!status.ok()) return ToGrpc(status.status());
  *response = *status;
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context,
                                      const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobStatus>* writer) {
  if (request->job_id().empty()) return Invalid("WatchJob: job_id is empty");
  const auto end = Clock::now() + o_.max_watch;
  int64_t version = -1;
  while (!context->IsCancelled() && Clock::now() < end) {
    // Short waits so that a client that went away is noticed.
    auto status = c_.scheduler->WaitForChange(request->job_id(), &version,
                                              std::min(end, Clock::now() + std::chrono::milliseconds(500)));
    if (absl::IsDeadlineExceeded(status.status())) continue;
    if (!status.ok()) return ToGrpc(status.status());
    if (!writer->Write(*status)) return grpc::Status::OK;  // the client went away
    const v1::JobState s = status->state();
    if (s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED) {
      return grpc::Status::OK;
    }
  }
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                                      v1::ListJobsResponse* response) {
  for (v1::JobStatus& s : c_.scheduler->List()) *response->add_jobs() = std::move(s);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* request,
                                       v1::JobStatus* response) {
  if (request->job_id().empty()) return Invalid("CancelJob: job_id is empty");
  auto status = c_.scheduler->Cancel(request->job_id());
  if (!status.ok()) return ToGrpc(status.status());
  *response = *status;
  return grpc::Status::OK;
}

// ---- WorkerService

grpc::Status WorkerServiceImpl::RegisterWorker(grpc::ServerContext*,
                                               const v1::RegisterWorkerRequest* request,
                                               v1::RegisterWorkerResponse* response) {
  auto session = c_.registry->Register(request->info(), Clock::now());
  if (!session.ok()) return ToGrpc(session.status());
  LM_LOG(INFO) << "worker " << request->info().worker_id() << " registered (" << *session << ", "
               << request->info().device() << ", " << request->info().model() << ")";
  response->set_session_id(*session);
  response->set_heartbeat_interval_ms(o_.heartbeat_interval.count());
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* request,
                                          v1::HeartbeatResponse* response) {
  if (request->wait_ms() < 0) return Invalid("Heartbeat: wait_ms must be >= 0");
  auto reply = c_.registry->Heartbeat(*request, Clock::now());
  if (!reply.ok()) return ToGrpc(reply.status());
  // Metrics first: the long poll below must not delay the job's progress.
  c_.scheduler->OnHeartbeat(*request);
  if (!reply->has_task() && reply->abort_size() == 0 && request->wait_ms() > 0) {
    const auto wait = std::min(std::chrono::milliseconds(request->wait_ms()), o_.heartbeat_interval);
    reply = c_.registry->WaitForMail(request->worker_id(), request->session_id(), Clock::now() + wait);
    if (!reply.ok()) return ToGrpc(reply.status());
  }
  *response = *reply;
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportTaskResult(grpc::ServerContext*,
                                                 const v1::TaskResultRequest* request,
                                                 v1::TaskResultResponse*) {
  absl::Status s = c_.registry->CheckSession(request->worker_id(), request->session_id());
  if (s.ok()) s = c_.scheduler->OnTaskResult(*request);
  return ToGrpc(s);
}

grpc::Status WorkerServiceImpl::GetShard(grpc::ServerContext*, const v1::GetShardRequest* request,
                                         v1::Shard* response) {
  auto shard = c_.scheduler->GetShard(*request);
  if (!shard.ok()) return ToGrpc(shard.status());
  *response = std::move(*shard);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                                            v1::ListWorkersResponse* response) {
  for (v1::WorkerStatus& w : c_.registry->List(Clock::now())) *response->add_workers() = std::move(w);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::LeaveWorker(grpc::ServerContext*, const v1::LeaveWorkerRequest* request,
                                            v1::LeaveWorkerResponse*) {
  absl::Status s = c_.registry->Leave(request->worker_id(), request->session_id(), request->reason());
  if (!s.ok()) return ToGrpc(s);
  LM_LOG(INFO) << "worker " << request->worker_id() << " left: "
               << (request->reason().empty() ? "(no reason given)" : request->reason());
  return grpc::Status::OK;
}

// ---- RendezvousService

grpc::Status RendezvousServiceImpl::Set(grpc::ServerContext*, const v1::StoreSetRequest* request,
                                        v1::StoreSetResponse*) {
  return ToGrpc(c_.rendezvous->Set(request->key(), request->value()));
}

grpc::Status RendezvousServiceImpl::Get(grpc::ServerContext* context,
                                        const v1::StoreGetRequest* request,
                                        v1::StoreGetResponse* response) {
  if (request->key().empty()) return Invalid("rendezvous Get: key is empty");
  if (request->wait_ms() < 0) return Invalid("rendezvous Get: wait_ms must be >= 0");
  // Never wait past the client's own deadline or the server's bound.
  auto wait = std::min(std::chrono::milliseconds(request->wait_ms()), o_.max_store_wait);
  const auto until_deadline = std::chrono::duration_cast<std::chrono::milliseconds>(
      context->deadline() - std::chrono::system_clock::now());
  if (until_deadline.count() > 0) wait = std::min(wait, until_deadline);
  auto value = c_.rendezvous->Get(request->key(), wait);
  if (!value.ok()) return ToGrpc(value.status());
  response->set_value(std::move(*value));
  return grpc::Status::OK;
}

// ---- CheckpointService

grpc::Status CheckpointServiceImpl::UploadCheckpoint(grpc::ServerContext*,
                                                     grpc::ServerReader<v1::CheckpointChunk>* reader,
                                                     v1::CheckpointInfo* response) {
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
  if (header.sha256().size() != 64) return Invalid("UploadCheckpoint: sha256 must be 64 hex digits");
  absl::Status allowed = c_.scheduler->CheckUploader(header.ref());
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
  if (!info.ok()) return ToGrpc(info.status());
  c_.scheduler->OnCheckpointStored(*info);
  c_.metrics->RecordCheckpoint("upload", static_cast<int64_t>(bytes.size()), SecondsSince(start));
  LM_LOG(INFO) << "checkpoint " << info->checkpoint_id() << " stored (" << bytes.size() << " bytes)";
  *response = *info;
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::DownloadCheckpoint(grpc::ServerContext* context,
                                                       const v1::DownloadCheckpointRequest* request,
                                                       grpc::ServerWriter<v1::CheckpointChunk>* writer) {
  if (request->checkpoint().empty()) return Invalid("DownloadCheckpoint: checkpoint is empty");
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
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    chunk.set_data(bytes->substr(off, step));
    if (!writer->Write(chunk)) return grpc::Status::OK;
    chunk.clear_header();
    if (n == 0) break;
  }
  c_.metrics->RecordCheckpoint("download", static_cast<int64_t>(n), SecondsSince(start));
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::ListCheckpoints(grpc::ServerContext*,
                                                    const v1::ListCheckpointsRequest* request,
                                                    v1::ListCheckpointsResponse* response) {
  for (auto& info : c_.checkpoints->List(request->job_id())) *response->add_checkpoints() = info;
  return grpc::Status::OK;
}

}  // namespace llava
