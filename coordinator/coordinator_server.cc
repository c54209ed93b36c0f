#include "coordinator/coordinator_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/net/transfer_window.h"
#include "common/status_macros.h"

namespace llava {

absl::Status CoordinatorOptions::Validate() const {
  if (listen.empty()) return absl::InvalidArgumentError("--listen is empty");
  if (state_dir.empty()) return absl::InvalidArgumentError("--state_dir is empty");
  if (security == nullptr) return absl::InvalidArgumentError("security is unset");
  auto positive = [](const char* name, std::chrono::milliseconds v) -> absl::Status {
    if (v.count() <= 0) return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0 ms"));
    return absl::OkStatus();
  };
  LM_RETURN_IF_ERROR(positive("heartbeat_interval", heartbeat_interval));
  LM_RETURN_IF_ERROR(positive("worker_timeout", worker_timeout));
  LM_RETURN_IF_ERROR(positive("restart_wait", restart_wait));
  LM_RETURN_IF_ERROR(positive("collective_timeout", collective_timeout));
  LM_RETURN_IF_ERROR(positive("tick", tick));
  if (worker_timeout <= heartbeat_interval) {
    return absl::InvalidArgumentError("worker_timeout must exceed heartbeat_interval");
  }
  if (checkpoint_chunk_bytes <= 0 || checkpoint_chunk_bytes + 4096 > max_message_bytes) {
    return absl::InvalidArgumentError(
        "checkpoint_chunk_bytes must be > 0 and fit in max_message_bytes");
  }
  if (max_checkpoint_bytes <= 0)
    return absl::InvalidArgumentError("--max_checkpoint_bytes must be > 0");
  if (max_jobs <= 0) return absl::InvalidArgumentError("--max_jobs must be > 0");
  if (max_workers <= 0) return absl::InvalidArgumentError("--max_workers must be > 0");
  if (max_long_polls <= 0) return absl::InvalidArgumentError("--max_long_polls must be > 0");
  if (finished_job_ttl.count() < 0)
    return absl::InvalidArgumentError("--finished_job_ttl_ms must be >= 0");
  LM_RETURN_IF_ERROR(positive("max_connection_idle", max_connection_idle));
  CheckpointStoreOptions store;
  store.keep_last = keep_checkpoints;
  store.max_job_bytes = max_job_checkpoint_bytes;
  return store.Validate();
}

CoordinatorServer::CoordinatorServer(CoordinatorOptions options) : options_(std::move(options)) {}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

absl::Status CoordinatorServer::Start() {
  LM_RETURN_IF_ERROR(options_.Validate());
  LM_RETURN_IF_ERROR(MakeDirs(options_.state_dir));
  registry_ = std::make_unique<WorkerRegistry>(options_.worker_timeout, options_.max_workers);
  rendezvous_ = std::make_unique<RendezvousStore>();
  CheckpointStoreOptions store;
  store.keep_last = options_.keep_checkpoints;
  store.max_job_bytes = options_.max_job_checkpoint_bytes;
  LM_ASSIGN_OR_RETURN(checkpoints_,
                      CheckpointStore::Open(options_.state_dir + "/checkpoints", store));
  SchedulerOptions so;
  so.restart_wait = options_.restart_wait;
  so.collective_timeout = options_.collective_timeout;
  so.state_dir = options_.state_dir;
  so.tensorboard_dir = options_.tensorboard_dir.empty() ? options_.state_dir + "/tensorboard"
                                                        : options_.tensorboard_dir;
  so.finished_job_ttl = options_.finished_job_ttl;
  so.max_jobs = options_.max_jobs;
  scheduler_ =
      std::make_unique<JobScheduler>(so, registry_.get(), checkpoints_.get(), rendezvous_.get());
  LM_RETURN_IF_ERROR(scheduler_->LoadState());

  // Metrics are kept whether or not they are served: the handlers never check.
  metrics_registry_ = std::make_shared<prometheus::Registry>();
  metrics_ =
      std::make_unique<CoordinatorMetrics>(*metrics_registry_, scheduler_.get(), registry_.get());
  if (!options_.metrics_listen.empty()) {
    LM_ASSIGN_OR_RETURN(metrics_endpoint_, MetricsEndpoint::Start(options_.metrics_listen));
    metrics_endpoint_->Add(metrics_registry_);
    metrics_endpoint_->Add(metrics_->cluster());
  }
  if (!options_.health_listen.empty()) {
    LM_ASSIGN_OR_RETURN(
        health_, HealthServer::Start(options_.health_listen, "coordinator", options_.listen));
  }

  long_polls_ = std::make_unique<LongPollGate>(options_.max_long_polls);
  Components c{registry_.get(), scheduler_.get(),  rendezvous_.get(), checkpoints_.get(),
               metrics_.get(),  long_polls_.get(), &stopping_};
  ServiceOptions o;
  o.tokens_required = options_.security->has_token();
  o.heartbeat_interval = options_.heartbeat_interval;
  o.checkpoint_chunk_bytes = options_.checkpoint_chunk_bytes;
  o.max_checkpoint_bytes = options_.max_checkpoint_bytes;
  job_service_ = std::make_unique<JobServiceImpl>(c, o);
  worker_service_ = std::make_unique<WorkerServiceImpl>(c, o);
  rendezvous_service_ = std::make_unique<RendezvousServiceImpl>(c, o);
  checkpoint_service_ = std::make_unique<CheckpointServiceImpl>(c, o);

  // The standard grpc.health.v1 service, for probes; server reflection, so that grpcurl
  // and other generic tools find the services without the .proto (behind the same
  // credentials as every other call).
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, options_.security->ServerCredentials(), &port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
  // Checkpoint uploads (common/net/transfer_window.h).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                             TransferWindowBytes(options_.max_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(options_.max_connection_idle.count()));
  builder.RegisterService(job_service_.get());
  builder.RegisterService(worker_service_.get());
  builder.RegisterService(rendezvous_service_.get());
  builder.RegisterService(checkpoint_service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(metrics_->rpc().InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("coordinator: cannot listen on ", options_.listen));
  }
  ticker_ = std::thread([this] {
    while (!stop_.load()) {
      scheduler_->Tick(Clock::now());
      std::this_thread::sleep_for(options_.tick);
    }
  });
  SetHealthStatus(server_.get(), /*alive=*/true, /*ready=*/true);
  if (health_) health_->SetReady(true);
  LM_LOG(INFO) << "coordinator listening on port " << port_ << " ("
               << (options_.security->tls() ? "TLS" : "plaintext")
               << (options_.security->has_token() ? ", bearer token" : "") << "), state in "
               << options_.state_dir;
  if (health_) LM_LOG(INFO) << "coordinator: health probes on port " << health_->port();
  if (metrics_endpoint_)
    LM_LOG(INFO) << "coordinator: metrics on port " << metrics_endpoint_->port();
  return absl::OkStatus();
}

void CoordinatorServer::Wait() {
  if (server_) server_->Wait();
}

void CoordinatorServer::Shutdown() {
  if (stop_.exchange(true)) return;
  if (health_) health_->Shutdown();
  // Every wait ends now, so that the grace below is spent on calls that are working.
  stopping_ = true;
  if (scheduler_) scheduler_->Shutdown();
  if (rendezvous_) rendezvous_->Shutdown();
  if (registry_) registry_->Shutdown();
  if (server_) {
    server_->GetHealthCheckService()->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  if (ticker_.joinable()) ticker_.join();
  if (scheduler_) scheduler_->PersistAll();
}

}  // namespace llava
