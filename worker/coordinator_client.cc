#include "worker/coordinator_client.h"

#include <grpcpp/grpcpp.h>

#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/net/transfer_window.h"
#include "common/sha256.h"

namespace llava {
absl::Status FromGrpc(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

CoordinatorClient::CoordinatorClient(ClientOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
  // Reconnect quickly after a coordinator restart.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Checkpoint downloads (common/net/transfer_window.h).
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
              TransferWindowBytes(options_.max_message_bytes));
  options_.security->ConfigureChannel(&args);
  channel_ =
      grpc::CreateCustomChannel(options_.address, options_.security->ChannelCredentials(), args);
  jobs_ = v1::JobService::NewStub(channel_);
  workers_ = v1::WorkerService::NewStub(channel_);
  rendezvous_ = v1::RendezvousService::NewStub(channel_);
  checkpoints_ = v1::CheckpointService::NewStub(channel_);
}

void CoordinatorClient::SetDeadline(grpc::ClientContext* context,
                                    std::chrono::milliseconds extra) const {
  context->set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout + extra);
}

// One unary call with a deadline; `what` names it in errors.
#define LLAVA_UNARY(stub, method, request, response_type, what)  \
  do {                                                           \
    grpc::ClientContext context;                                 \
    SetDeadline(&context);                                       \
    response_type response;                                      \
    grpc::Status s = stub->method(&context, request, &response); \
    if (!s.ok()) return FromGrpc(s, what);                       \
    return response;                                             \
  } while (0)

template <typename Request, typename Response, typename Call, typename Append>
absl::StatusOr<Response> CoordinatorClient::AllPages(const Call& call, const Append& append,
                                                     const char* what) const {
  Response all;
  Request request;
  request.set_page_size(1000);
  do {
    grpc::ClientContext context;
    SetDeadline(&context);
    Response page;
    grpc::Status s = call(&context, request, &page);
    if (!s.ok()) return FromGrpc(s, what);
    append(&page, &all);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  return all;
}

absl::StatusOr<v1::RegisterWorkerResponse> CoordinatorClient::Register(const v1::WorkerInfo& info) {
  v1::RegisterWorkerRequest request;
  *request.mutable_info() = info;
  LLAVA_UNARY(workers_, RegisterWorker, request, v1::RegisterWorkerResponse, "RegisterWorker");
}

void CoordinatorClient::SetSession(const std::string& worker_id, const std::string& session_id) {
  absl::MutexLock lock(&mu_);
  worker_id_ = worker_id;
  session_id_ = session_id;
}

std::pair<std::string, std::string> CoordinatorClient::Session() const {
  absl::MutexLock lock(&mu_);
  return {worker_id_, session_id_};
}

absl::StatusOr<v1::HeartbeatResponse> CoordinatorClient::Heartbeat(
    const v1::HeartbeatRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::milliseconds(request.wait_ms()));  // a long poll waits
  v1::HeartbeatResponse response;
  grpc::Status s = workers_->Heartbeat(&context, request, &response);
  if (!s.ok()) return FromGrpc(s, "Heartbeat");
  return response;
}

absl::Status CoordinatorClient::ReportTaskResult(const v1::TaskResultRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::TaskResultResponse response;
  return FromGrpc(workers_->ReportTaskResult(&context, request, &response), "ReportTaskResult");
}

absl::StatusOr<v1::Shard> CoordinatorClient::GetShard(const v1::TaskRef& ref, int64_t epoch) {
  v1::GetShardRequest request;
  *request.mutable_ref() = ref;
  request.set_epoch(epoch);
  std::tie(*request.mutable_worker_id(), *request.mutable_session_id()) = Session();
  LLAVA_UNARY(workers_, GetShard, request, v1::Shard, "GetShard");
}

absl::Status CoordinatorClient::Leave(const std::string& worker_id, const std::string& session_id,
                                      const std::string& reason) {
  v1::LeaveWorkerRequest request;
  request.set_worker_id(worker_id);
  request.set_session_id(session_id);
  request.set_reason(reason);
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::LeaveWorkerResponse response;
  return FromGrpc(workers_->LeaveWorker(&context, request, &response), "LeaveWorker");
}

absl::StatusOr<v1::ListWorkersResponse> CoordinatorClient::ListWorkers() {
  return AllPages<v1::ListWorkersRequest, v1::ListWorkersResponse>(
      [this](grpc::ClientContext* c, const v1::ListWorkersRequest& r, v1::ListWorkersResponse* p) {
        return workers_->ListWorkers(c, r, p);
      },
      [](v1::ListWorkersResponse* page, v1::ListWorkersResponse* all) {
        for (auto& w : *page->mutable_workers()) *all->add_workers() = std::move(w);
      },
      "ListWorkers");
}

absl::Status CoordinatorClient::Set(const std::string& key, const std::string& value) {
  v1::StoreSetRequest request;
  request.set_key(key);
  request.set_value(value);
  std::tie(*request.mutable_worker_id(), *request.mutable_session_id()) = Session();
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::StoreSetResponse response;
  return FromGrpc(rendezvous_->Set(&context, request, &response),
                  absl::StrCat("rendezvous Set ", key));
}

absl::StatusOr<std::string> CoordinatorClient::Get(const std::string& key,
                                                   std::chrono::milliseconds wait) {
  v1::StoreGetRequest request;
  request.set_key(key);
  request.set_wait_ms(wait.count());
  std::tie(*request.mutable_worker_id(), *request.mutable_session_id()) = Session();
  grpc::ClientContext context;
  SetDeadline(&context, wait);
  v1::StoreGetResponse response;
  grpc::Status s = rendezvous_->Get(&context, request, &response);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("rendezvous Get ", key));
  return response.value();
}

absl::StatusOr<v1::CheckpointInfo> CoordinatorClient::UploadCheckpoint(v1::CheckpointHeader header,
                                                                       const std::string& bytes) {
  header.set_total_bytes(static_cast<int64_t>(bytes.size()));
  header.set_sha256(Sha256Hex(bytes));
  std::tie(*header.mutable_worker_id(), *header.mutable_session_id()) = Session();
  grpc::ClientContext context;
  // Large checkpoints get time in proportion (at least 10 MB/s).
  SetDeadline(&context, std::chrono::milliseconds(static_cast<int64_t>(bytes.size() / 10000)));
  v1::CheckpointInfo info;
  auto writer = checkpoints_->UploadCheckpoint(&context, &info);
  v1::CheckpointChunk chunk;
  *chunk.mutable_header() = header;
  const size_t step = static_cast<size_t>(options_.checkpoint_chunk_bytes);
  for (size_t off = 0; off < bytes.size(); off += step) {
    chunk.set_data(bytes.substr(off, step));
    if (!writer->Write(chunk)) break;  // the server ended the call: Finish() says why
    chunk.clear_header();
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return FromGrpc(s, "UploadCheckpoint");
  return info;
}

absl::StatusOr<CoordinatorClient::Download> CoordinatorClient::DownloadCheckpoint(
    const std::string& checkpoint, bool projector_only) {
  v1::DownloadCheckpointRequest request;
  request.set_checkpoint(checkpoint);
  request.set_projector_only(projector_only);
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::minutes(10));
  auto reader = checkpoints_->DownloadCheckpoint(&context, request);
  Download out;
  v1::CheckpointChunk chunk;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      if (!chunk.has_header())
        return absl::DataLossError("DownloadCheckpoint: no header in the first chunk");
      out.header = chunk.header();
      out.bytes.reserve(static_cast<size_t>(out.header.total_bytes()));
      first = false;
    }
    out.bytes += chunk.data();
    if (static_cast<int64_t>(out.bytes.size()) > out.header.total_bytes()) {
      context.TryCancel();
      return absl::DataLossError("DownloadCheckpoint: more bytes than announced");
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpc(s, absl::StrCat("DownloadCheckpoint ", checkpoint));
  if (first) return absl::DataLossError("DownloadCheckpoint: empty stream");
  if (static_cast<int64_t>(out.bytes.size()) != out.header.total_bytes()) {
    return absl::DataLossError(absl::StrCat("DownloadCheckpoint ", checkpoint, ": got ",
                                            out.bytes.size(), " of ", out.header.total_bytes(),
                                            " bytes"));
  }
  const std::string sha = Sha256Hex(out.bytes);
  if (sha != out.header.sha256()) {
    return absl::DataLossError(absl::StrCat("DownloadCheckpoint ", checkpoint, ": SHA-256 ", sha,
                                            " differs from the announced ", out.header.sha256()));
  }
  return out;
}

absl::StatusOr<v1::ListCheckpointsResponse> CoordinatorClient::ListCheckpoints(
    const std::string& job_id) {
  v1::ListCheckpointsRequest request;
  request.set_job_id(job_id);
  LLAVA_UNARY(checkpoints_, ListCheckpoints, request, v1::ListCheckpointsResponse,
              "ListCheckpoints");
}

absl::StatusOr<v1::JobStatus> CoordinatorClient::Submit(const v1::SubmitJobRequest& request) {
  LLAVA_UNARY(jobs_, SubmitJob, request, v1::JobStatus, "SubmitJob");
}

absl::StatusOr<v1::JobStatus> CoordinatorClient::GetJob(const std::string& job_id,
                                                        bool include_history) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  request.set_include_history(include_history);
  LLAVA_UNARY(jobs_, GetJob, request, v1::JobStatus, "GetJob");
}

absl::StatusOr<v1::ListJobsResponse> CoordinatorClient::ListJobs() {
  return AllPages<v1::ListJobsRequest, v1::ListJobsResponse>(
      [this](grpc::ClientContext* c, const v1::ListJobsRequest& r, v1::ListJobsResponse* p) {
        return jobs_->ListJobs(c, r, p);
      },
      [](v1::ListJobsResponse* page, v1::ListJobsResponse* all) {
        for (auto& j : *page->mutable_jobs()) *all->add_jobs() = std::move(j);
      },
      "ListJobs");
}

absl::Status CoordinatorClient::DeleteJob(const std::string& job_id) {
  v1::DeleteJobRequest request;
  request.set_job_id(job_id);
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::DeleteJobResponse response;
  return FromGrpc(jobs_->DeleteJob(&context, request, &response), "DeleteJob");
}

absl::StatusOr<v1::JobStatus> CoordinatorClient::CancelJob(const std::string& job_id) {
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  LLAVA_UNARY(jobs_, CancelJob, request, v1::JobStatus, "CancelJob");
}

#undef LLAVA_UNARY

absl::StatusOr<v1::JobStatus> CoordinatorClient::WatchJob(
    const std::string& job_id, std::chrono::milliseconds timeout,
    const std::function<void(const v1::JobStatus&)>& on_status) {
  const auto end = std::chrono::system_clock::now() + timeout;
  v1::JobStatus last;
  while (std::chrono::system_clock::now() < end) {
    grpc::ClientContext context;
    context.set_deadline(end);
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    auto reader = jobs_->WatchJob(&context, request);
    v1::JobStatus status;
    while (reader->Read(&status)) {
      last = status;
      on_status(status);
    }
    grpc::Status s = reader->Finish();
    if (IsTerminal(last.state())) return last;
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) break;
    if (!s.ok() && s.error_code() != grpc::StatusCode::UNAVAILABLE) return FromGrpc(s, "WatchJob");
    // The stream ended early (server bound, or the coordinator restarting): reopen.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return absl::DeadlineExceededError(absl::StrCat("WatchJob ", job_id, ": still ",
                                                  v1::JobState_Name(last.state()), " after ",
                                                  timeout.count(), " ms"));
}

}  // namespace llava
