#include "common/net/health_server.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <unistd.h>

#include <future>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "protos/llava.grpc.pb.h"

namespace llava {

void SetHealthStatus(grpc::Server* server, bool alive, bool ready) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", alive);
  health->SetServingStatus(kReadinessService, ready);
}

namespace {

// Also what gives the server a synchronous method: gRPC refuses to start a server whose
// only service is the default health service.
class ProbeServiceImpl final : public v1::ProbeService::Service {
 public:
  ProbeServiceImpl(std::string role, std::string id) {
    info_.set_role(std::move(role));
    info_.set_id(std::move(id));
    info_.set_started_unix_ms(absl::ToUnixMillis(absl::Now()));
    info_.set_pid(getpid());
  }
  grpc::Status GetProcessInfo(grpc::ServerContext*, const v1::ProcessInfoRequest*,
                              v1::ProcessInfoResponse* response) override {
    *response = info_;
    return grpc::Status::OK;
  }

 private:
  v1::ProcessInfoResponse info_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& listen,
                                                                  const std::string& role,
                                                                  const std::string& id) {
  // Process-wide switch, read by every ServerBuilder built after it.
  grpc::EnableDefaultHealthCheckService(true);
  std::unique_ptr<HealthServer> h(new HealthServer());
  h->info_service_ = std::make_unique<ProbeServiceImpl>(role, id);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &h->port_);
  builder.RegisterService(h->info_service_.get());
  // Probes connect, ask and go: a connection idle this long is closed, so that idle
  // clients cannot pile up on a port that anyone may reach.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, 60000);
  h->server_ = builder.BuildAndStart();
  if (h->server_ == nullptr || h->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--health_listen: cannot listen on ", listen));
  }
  SetHealthStatus(h->server_.get(), /*alive=*/true, /*ready=*/false);
  return h;
}

HealthServer::~HealthServer() { Shutdown(); }

void HealthServer::SetReady(bool ready) {
  if (server_) SetHealthStatus(server_.get(), /*alive=*/true, ready);
}

void HealthServer::Shutdown() {
  if (!server_) return;
  server_->GetHealthCheckService()->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  server_.reset();
}

absl::Status ProbeHealth(const HealthProbe& probe, const RpcSecurity* security) {
  grpc::ChannelArguments args;
  if (security != nullptr) security->ConfigureChannel(&args);
  auto channel = grpc::CreateCustomChannel(
      probe.target,
      security != nullptr ? security->ChannelCredentials() : grpc::InsecureChannelCredentials(),
      args);
  // HealthCheckRequest{string service = 1}, encoded by hand: the two health messages are
  // too small to justify a second copy of grpc's health.proto in the binary.
  if (probe.service.size() > 127) return absl::InvalidArgumentError("health service name too long");
  std::string request =
      probe.service.empty()
          ? std::string()
          : absl::StrCat("\x0a", std::string(1, static_cast<char>(probe.service.size())),
                         probe.service);
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1), response_buffer;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + probe.timeout);
  grpc::GenericStub stub(channel);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_buffer,
                 &response_buffer, [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status s = done.get_future().get();
  const std::string what = absl::StrCat("health of '", probe.service, "' at ", probe.target);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat(what, ": ", s.error_message()));
  }
  std::vector<grpc::Slice> slices;
  response_buffer.Dump(&slices);
  std::string response;
  for (const auto& sl : slices)
    response.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  // HealthCheckResponse{ServingStatus status = 1}: 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
  const int status = response.size() == 2 && response[0] == 0x08 ? response[1] : 0;
  if (status == 1) return absl::OkStatus();
  static const char* const kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  return absl::UnavailableError(
      absl::StrCat(what, ": ", status >= 0 && status <= 3 ? kNames[status] : "UNKNOWN"));
}

}  // namespace llava
