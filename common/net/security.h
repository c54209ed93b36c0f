// TLS and bearer-token settings of one process's gRPC servers and channels, and the gRPC
// credentials built from them: server certificates (optionally requiring client
// certificates), and tokens checked on every call except grpc.health.v1. A server's tokens
// carry a name and roles (common/net/caller.h): a tokens file gives each credential its
// own; a single token file is one credential with the client and worker roles. The
// handlers read the caller with CallerOf. Immutable once loaded; safe to share between
// threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net/caller.h"

namespace grpc {
class ServerContext;
class ChannelArguments;
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

namespace llava {

struct RpcSecurityOptions {
  // PEM files. tls_cert/tls_key: this process's certificate (the server's on a coordinator,
  // the client certificate of a worker or client). tls_ca: the CA bundle that verifies the
  // peer (clients: the server; servers with tls_client_auth: the clients).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  bool tls_client_auth = false;  // servers: refuse clients without a certificate from tls_ca
  std::string tls_server_name;   // clients: the name to verify in the server's certificate
  // A file holding the bearer token (a Kubernetes Secret mounted as a file). Clients and
  // workers send it; a server given only this accepts it with the client and worker
  // roles (one shared credential: workers and clients are not told apart).
  std::string auth_token_file;
  // Servers: the credentials by role, one per line, "<role> <name> <token>" (role:
  // client, worker or admin; '#' starts a comment). Takes the place of auth_token_file.
  std::string auth_tokens_file;

  bool UsesTls(bool server) const;
  // `server`: validated as a server's settings (needs cert and key for TLS), else a
  // client's (TLS when tls_ca or tls_cert is set). A token needs TLS either way: over
  // plaintext it would be readable by anyone on the path.
  absl::Status Validate(bool server) const;
};

class RpcSecurity {
 public:
  // Reads every file named (errors name the flag and the file).
  static absl::StatusOr<std::shared_ptr<const RpcSecurity>> LoadServer(const RpcSecurityOptions& o);
  static absl::StatusOr<std::shared_ptr<const RpcSecurity>> LoadClient(const RpcSecurityOptions& o);
  // Plaintext, no token: loopback runs (`launch`) and tests.
  static std::shared_ptr<const RpcSecurity> Insecure();

  // A server's accepted token, and who presents it.
  struct Credential {
    std::string token, name;
    unsigned roles = 0;
  };

  bool tls() const { return tls_; }
  bool has_token() const { return !token_.empty() || !credentials_.empty(); }

  // Server side: TLS (or plaintext) credentials; with a token, every call but health
  // must carry `authorization: Bearer <token>` or gets UNAUTHENTICATED before any handler.
  std::shared_ptr<grpc::ServerCredentials> ServerCredentials() const;
  // Client side: TLS (or plaintext) credentials carrying the token on every call.
  std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() const;
  // Client side: channel arguments the credentials need (the server name to verify).
  void ConfigureChannel(grpc::ChannelArguments* args) const;

 private:
  RpcSecurity() = default;
  static absl::StatusOr<std::shared_ptr<const RpcSecurity>> Load(const RpcSecurityOptions& o,
                                                                 bool server);

  bool tls_ = false;
  bool client_auth_ = false;
  std::string cert_pem_;
  std::string key_pem_;
  std::string ca_pem_;
  std::string server_name_;
  std::string token_;
  std::vector<Credential> credentials_;  // servers
};

// The caller of a server-side call: with tokens, its credential's name and roles (no
// roles if the call carried none it could check); without, "local" with every role.
Caller CallerOf(const grpc::ServerContext& context, bool tokens_required);

}  // namespace llava
