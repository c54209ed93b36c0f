#include "common/net/security.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/crypto.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace llava {
namespace {

constexpr char kHealthPrefix[] = "/grpc.health.v1.Health/";

// Checks the bearer token before any handler runs. Non-blocking: the comparison is
// constant-time over the expected token and needs no I/O.
class TokenProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenProcessor(std::string token) : expected_(absl::StrCat("Bearer ", token)) {}

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext*, OutputMetadata* consumed,
                       OutputMetadata*) override {
    auto path = metadata.find(":path");
    if (path != metadata.end() &&
        absl::StartsWith(absl::string_view(path->second.data(), path->second.size()), kHealthPrefix)) {
      return grpc::Status::OK;  // probes carry no token
    }
    auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing bearer token (metadata 'authorization: Bearer <token>')");
    }
    const grpc::string_ref& got = it->second;
    if (got.size() != expected_.size() ||
        CRYPTO_memcmp(got.data(), expected_.data(), expected_.size()) != 0) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token");
    }
    consumed->insert(std::make_pair(std::string(it->first.data(), it->first.size()),
                                    std::string(got.data(), got.size())));
    return grpc::Status::OK;
  }

 private:
  const std::string expected_;
};

class TokenPlugin : public grpc::MetadataCredentialsPlugin {
 public:
  explicit TokenPlugin(std::string token) : header_(absl::StrCat("Bearer ", token)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status GetMetadata(grpc::string_ref, grpc::string_ref, const grpc::AuthContext&,
                           std::multimap<grpc::string, grpc::string>* metadata) override {
    metadata->insert(std::make_pair("authorization", header_));
    return grpc::Status::OK;
  }

 private:
  const std::string header_;
};

absl::Status ReadPem(const char* flag, const std::string& path, std::string* out) {
  if (path.empty()) return absl::OkStatus();
  auto text = ReadFile(path);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", text.status().message()));
  if (text->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is not a PEM file"));
  }
  *out = std::move(*text);
  return absl::OkStatus();
}

absl::Status ReadToken(const std::string& path, std::string* out) {
  if (path.empty()) return absl::OkStatus();
  auto text = ReadFile(path);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("--auth_token_file: ", text.status().message()));
  std::string token(absl::StripAsciiWhitespace(*text));  // Secrets often end in a newline
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("--auth_token_file: ", path, " is empty"));
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {  // a header value: visible ASCII only
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_token_file: ", path, " holds characters a token cannot carry"));
    }
  }
  *out = std::move(token);
  return absl::OkStatus();
}

}  // namespace

bool RpcSecurityOptions::UsesTls(bool server) const {
  // A server speaks TLS with a certificate of its own; a client as soon as it has a CA to
  // verify the server with (or a certificate to show).
  return server ? !tls_cert.empty() : (!tls_ca.empty() || !tls_cert.empty());
}

absl::Status RpcSecurityOptions::Validate(bool server) const {
  if (tls_cert.empty() != tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  const bool tls = UsesTls(server);
  if (server && !tls && (!tls_ca.empty() || tls_client_auth)) {
    return absl::InvalidArgumentError("--tls_ca/--tls_client_auth on a server need --tls_cert and --tls_key");
  }
  if (server && tls_client_auth && tls_ca.empty()) {
    return absl::InvalidArgumentError("--tls_client_auth needs --tls_ca (the CA of the client certificates)");
  }
  if (!auth_token_file.empty() && !tls) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--auth_token_file needs TLS (", server ? "--tls_cert and --tls_key" : "--tls_ca",
        "): a bearer token over plaintext is readable by anyone on the path"));
  }
  return absl::OkStatus();
}

std::shared_ptr<const RpcSecurity> RpcSecurity::Insecure() {
  return std::shared_ptr<const RpcSecurity>(new RpcSecurity());
}

absl::StatusOr<std::shared_ptr<const RpcSecurity>> RpcSecurity::Load(const RpcSecurityOptions& o,
                                                                       bool server) {
  LM_RETURN_IF_ERROR(o.Validate(server));
  std::shared_ptr<RpcSecurity> s(new RpcSecurity());
  LM_RETURN_IF_ERROR(ReadPem("tls_cert", o.tls_cert, &s->cert_pem_));
  LM_RETURN_IF_ERROR(ReadPem("tls_key", o.tls_key, &s->key_pem_));
  LM_RETURN_IF_ERROR(ReadPem("tls_ca", o.tls_ca, &s->ca_pem_));
  LM_RETURN_IF_ERROR(ReadToken(o.auth_token_file, &s->token_));
  s->tls_ = o.UsesTls(server);
  if (server) {
    s->client_auth_ = o.tls_client_auth;
  } else {
    s->server_name_ = o.tls_server_name;
  }
  return std::shared_ptr<const RpcSecurity>(std::move(s));
}

absl::StatusOr<std::shared_ptr<const RpcSecurity>> RpcSecurity::LoadServer(const RpcSecurityOptions& o) {
  return Load(o, /*server=*/true);
}

absl::StatusOr<std::shared_ptr<const RpcSecurity>> RpcSecurity::LoadClient(const RpcSecurityOptions& o) {
  return Load(o, /*server=*/false);
}

std::shared_ptr<grpc::ServerCredentials> RpcSecurity::ServerCredentials() const {
  if (!tls_) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      client_auth_ ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_root_certs = ca_pem_;
  options.pem_key_cert_pairs.push_back({key_pem_, cert_pem_});
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::SslServerCredentials(options);
  if (!token_.empty()) creds->SetAuthMetadataProcessor(std::make_shared<TokenProcessor>(token_));
  return creds;
}

std::shared_ptr<grpc::ChannelCredentials> RpcSecurity::ChannelCredentials() const {
  if (!tls_) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca_pem_;  // empty: the system's roots
  options.pem_private_key = key_pem_;
  options.pem_cert_chain = cert_pem_;
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::SslCredentials(options);
  if (token_.empty()) return creds;
  return grpc::CompositeChannelCredentials(
      creds, grpc::MetadataCredentialsFromPlugin(std::make_unique<TokenPlugin>(token_)));
}

void RpcSecurity::ConfigureChannel(grpc::ChannelArguments* args) const {
  if (tls_ && !server_name_.empty()) args->SetSslTargetNameOverride(server_name_);
}

}  // namespace llava
