// A plaintext gRPC server that serves only grpc.health.v1 (and ProbeService, which says
// which process answers), for Kubernetes probes: native gRPC probes speak neither TLS nor
// tokens, so they get a port of their own. Service ""
// is SERVING while the process runs (liveness); service "readiness" is SERVING once the
// process can do its work (a coordinator listening, a worker registered). Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/net/security.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace llava {

inline constexpr char kReadinessService[] = "readiness";

class HealthServer {
 public:
  // `listen`: host:port (port 0: any free port). `role`, `id`: what ProbeService reports.
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& listen,
                                                             const std::string& role,
                                                             const std::string& id);
  ~HealthServer();

  int port() const { return port_; }
  void SetReady(bool ready);
  // Every service NOT_SERVING (probes fail from now on), then the server stops.
  void Shutdown();

 private:
  HealthServer() = default;
  std::unique_ptr<grpc::Service> info_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// Sets both statuses on any gRPC server built with the default health service.
void SetHealthStatus(grpc::Server* server, bool alive, bool ready);

struct HealthProbe {
  std::string target;   // host:port
  std::string service;  // "" (liveness) or kReadinessService
  std::chrono::milliseconds timeout{2000};
};
// One grpc.health.v1.Health/Check call, as a Kubernetes gRPC probe makes it: OK when the
// service is SERVING, UNAVAILABLE naming the status otherwise, or the call's error.
// `security`: the channel's credentials (null: plaintext).
absl::Status ProbeHealth(const HealthProbe& probe, const RpcSecurity* security);

}  // namespace llava
