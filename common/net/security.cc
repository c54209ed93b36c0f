#include "common/net/security.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/crypto.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace llava {
namespace {

constexpr char kHealthPrefix[] = "/grpc.health.v1.Health/";
constexpr char kCallerProperty[] = "llava-caller";
constexpr char kRolesProperty[] = "llava-roles";

// Checks the bearer token before any handler runs and records whose it is in the call's
// auth context. Non-blocking: each comparison is constant-time over the expected token
// and needs no I/O.
class TokenProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenProcessor(const std::vector<RpcSecurity::Credential>& credentials) {
    for (const auto& c : credentials) {
      expected_.push_back({absl::StrCat("Bearer ", c.token), c.name, std::to_string(c.roles)});
    }
  }

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed, OutputMetadata*) override {
    auto path = metadata.find(":path");
    if (path != metadata.end() &&
        absl::StartsWith(absl::string_view(path->second.data(), path->second.size()),
                         kHealthPrefix)) {
      return grpc::Status::OK;  // probes carry no token
    }
    auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing bearer token (metadata 'authorization: Bearer <token>')");
    }
    const grpc::string_ref& got = it->second;
    const Expected* match = nullptr;
    for (const Expected& e : expected_) {
      if (got.size() == e.header.size() &&
          CRYPTO_memcmp(got.data(), e.header.data(), e.header.size()) == 0) {
        match = &e;
      }
    }
    if (match == nullptr)
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token");
    context->AddProperty(kCallerProperty, match->name);
    context->AddProperty(kRolesProperty, match->roles);
    consumed->insert(std::make_pair(std::string(it->first.data(), it->first.size()),
                                    std::string(got.data(), got.size())));
    return grpc::Status::OK;
  }

 private:
  struct Expected {
    std::string header, name, roles;
  };
  std::vector<Expected> expected_;
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
  if (!text.ok())
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", text.status().message()));
  if (text->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is not a PEM file"));
  }
  *out = std::move(*text);
  return absl::OkStatus();
}

absl::Status CheckToken(const std::string& where, const std::string& token) {
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": the token is empty"));
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {  // a header value: visible ASCII only
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": holds characters a token cannot carry"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadToken(const std::string& path, std::string* out) {
  if (path.empty()) return absl::OkStatus();
  auto text = ReadFile(path);
  if (!text.ok())
    return absl::InvalidArgumentError(absl::StrCat("--auth_token_file: ", text.status().message()));
  std::string token(absl::StripAsciiWhitespace(*text));  // Secrets often end in a newline
  if (token.empty())
    return absl::InvalidArgumentError(absl::StrCat("--auth_token_file: ", path, " is empty"));
  LM_RETURN_IF_ERROR(CheckToken(absl::StrCat("--auth_token_file: ", path), token));
  *out = std::move(token);
  return absl::OkStatus();
}

absl::Status ReadCredentials(const std::string& path, std::vector<RpcSecurity::Credential>* out) {
  auto text = ReadFile(path);
  if (!text.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens_file: ", text.status().message()));
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    const std::string where = absl::StrCat("--auth_tokens_file: ", path, " line ", line_no);
    std::vector<std::string> f = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.size() != 3)
      return absl::InvalidArgumentError(absl::StrCat(where, ": want '<role> <name> <token>'"));
    RpcSecurity::Credential c;
    auto roles = ParseRoles(f[0]);
    if (!roles.ok())
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", roles.status().message()));
    c.roles = *roles;
    LM_RETURN_IF_ERROR(CheckId(absl::StrCat(where, ": the name"), f[1]));
    LM_RETURN_IF_ERROR(CheckToken(where, f[2]));
    c.name = f[1];
    c.token = f[2];
    for (const auto& other : *out) {
      if (other.token == c.token)
        return absl::InvalidArgumentError(absl::StrCat(where, ": a token given twice"));
    }
    out->push_back(std::move(c));
  }
  if (out->empty())
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens_file: ", path, " holds no token"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<unsigned> ParseRoles(absl::string_view text) {
  unsigned roles = 0;
  for (absl::string_view role : absl::StrSplit(text, '+')) {
    if (role == "client") {
      roles |= kRoleClient;
    } else if (role == "worker") {
      roles |= kRoleWorker;
    } else if (role == "admin") {
      roles |= kRoleAdmin | kRoleClient;  // an admin is a client that may manage any job
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("role '", role, "' is unknown (known: client, worker, admin)"));
    }
  }
  return roles;
}

std::string RolesName(unsigned roles) {
  std::vector<std::string> names;
  if (roles & kRoleAdmin) names.push_back("admin");
  if ((roles & kRoleClient) && !(roles & kRoleAdmin)) names.push_back("client");
  if (roles & kRoleWorker) names.push_back("worker");
  return names.empty() ? "none" : absl::StrJoin(names, "+");
}

Caller CallerOf(const grpc::ServerContext& context, bool tokens_required) {
  Caller caller;
  if (!tokens_required) return caller;
  caller.name.clear();
  caller.roles = 0;
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return caller;
  for (const grpc::string_ref& v : auth->FindPropertyValues(kCallerProperty)) {
    caller.name.assign(v.data(), v.size());
  }
  for (const grpc::string_ref& v : auth->FindPropertyValues(kRolesProperty)) {
    caller.roles =
        static_cast<unsigned>(std::strtoul(std::string(v.data(), v.size()).c_str(), nullptr, 10));
  }
  return caller;
}

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
    return absl::InvalidArgumentError(
        "--tls_ca/--tls_client_auth on a server need --tls_cert and --tls_key");
  }
  if (server && tls_client_auth && tls_ca.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_auth needs --tls_ca (the CA of the client certificates)");
  }
  if (!auth_tokens_file.empty() && !server) {
    return absl::InvalidArgumentError(
        "--auth_tokens_file is a server's setting (clients: --auth_token_file)");
  }
  if (!auth_tokens_file.empty() && !auth_token_file.empty()) {
    return absl::InvalidArgumentError("give --auth_tokens_file or --auth_token_file, not both");
  }
  if ((!auth_token_file.empty() || !auth_tokens_file.empty()) && !tls) {
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
    if (!o.auth_tokens_file.empty()) {
      LM_RETURN_IF_ERROR(ReadCredentials(o.auth_tokens_file, &s->credentials_));
    } else if (!s->token_.empty()) {
      s->credentials_.push_back({s->token_, "shared", kRoleClient | kRoleWorker});
    }
    s->token_.clear();
    s->client_auth_ = o.tls_client_auth;
  } else {
    s->server_name_ = o.tls_server_name;
  }
  return std::shared_ptr<const RpcSecurity>(std::move(s));
}

absl::StatusOr<std::shared_ptr<const RpcSecurity>> RpcSecurity::LoadServer(
    const RpcSecurityOptions& o) {
  return Load(o, /*server=*/true);
}

absl::StatusOr<std::shared_ptr<const RpcSecurity>> RpcSecurity::LoadClient(
    const RpcSecurityOptions& o) {
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
  if (!credentials_.empty())
    creds->SetAuthMetadataProcessor(std::make_shared<TokenProcessor>(credentials_));
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
