// The coordinator server in-process, with its real gRPC, health and metrics ports on
// loopback: TLS and the bearer token (refused calls get UNAUTHENTICATED and change
// nothing; plaintext against TLS fails; client certificates when required), the
// plaintext probe port, Prometheus metrics of jobs, workers and RPCs, and a shutdown
// that fails the probes and writes the job records.
#include "coordinator/coordinator_server.h"

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "common/net/health_server.h"
#include "test_util.h"
#include "worker/coordinator_client.h"

namespace llava {
namespace {

using std::chrono::milliseconds;

class CoordinatorServerTest : public ::testing::Test {
 protected:
  // Starts a coordinator with `security` on an ephemeral port, plus probe and metrics ports.
  void Start(const RpcSecurityOptions& security) {
    dir_ = testing::MakeTempDir("coordinator-server");
    CoordinatorOptions o;
    o.listen = "127.0.0.1:0";
    o.state_dir = dir_ + "/state";
    o.health_listen = "127.0.0.1:0";
    o.metrics_listen = "127.0.0.1:0";
    o.heartbeat_interval = milliseconds(100);
    o.worker_timeout = milliseconds(1000);
    o.tick = milliseconds(20);
    auto loaded = RpcSecurity::LoadServer(security);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    o.security = *loaded;
    server_ = std::make_unique<CoordinatorServer>(o);
    ASSERT_TRUE(server_->Start().ok());
    address_ = "127.0.0.1:" + std::to_string(server_->port());
  }

  std::unique_ptr<CoordinatorClient> Client(const RpcSecurityOptions& security) {
    ClientOptions o;
    o.address = address_;
    o.rpc_timeout = milliseconds(3000);
    auto loaded = RpcSecurity::LoadClient(security);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    if (loaded.ok()) o.security = *loaded;
    return std::make_unique<CoordinatorClient>(o);
  }

  static RpcSecurityOptions ServerTls(bool token, bool client_auth = false) {
    const testing::TestPki& pki = testing::DevCertificates();
    RpcSecurityOptions s;
    s.tls_cert = pki.server_cert;
    s.tls_key = pki.server_key;
    if (client_auth) {
      s.tls_ca = pki.ca;
      s.tls_client_auth = true;
    }
    if (token) s.auth_token_file = pki.token;
    return s;
  }
  // A client that trusts the development CA; `token_file` empty: no token.
  static RpcSecurityOptions ClientTls(const std::string& token_file, bool client_cert = false) {
    const testing::TestPki& pki = testing::DevCertificates();
    RpcSecurityOptions s;
    s.tls_ca = pki.ca;
    s.auth_token_file = token_file;
    if (client_cert) {
      s.tls_cert = pki.client_cert;
      s.tls_key = pki.client_key;
    }
    return s;
  }

  static v1::SubmitJobRequest QueuedJob() {
    v1::SubmitJobRequest r;
    r.mutable_train()->set_projector("linear");
    r.mutable_train()->set_batch_size(4);
    r.mutable_train()->add_questions("What digit is this?");
    r.set_wait_for_workers(true);  // no worker here: the job stays QUEUED
    return r;
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  std::string dir_, address_;
  std::unique_ptr<CoordinatorServer> server_;
};

TEST_F(CoordinatorServerTest, TokenIsRequiredOnEveryCallButHealthAndRefusedCallsChangeNothing) {
  ASSERT_NO_FATAL_FAILURE(Start(ServerTls(/*token=*/true)));
  const testing::TestPki& pki = testing::DevCertificates();
  auto good = Client(ClientTls(pki.token));
  auto none = Client(ClientTls(""));
  const std::string wrong_file = dir_ + "/wrong-token";
  ASSERT_TRUE(WriteFileAtomic(wrong_file, "not-the-token\n").ok());
  auto wrong = Client(ClientTls(wrong_file));

  auto submitted = none->Submit(QueuedJob());
  ASSERT_FALSE(submitted.ok());
  EXPECT_EQ(submitted.status().code(), absl::StatusCode::kUnauthenticated) << submitted.status();
  EXPECT_NE(submitted.status().message().find("missing bearer token"), std::string::npos);
  submitted = wrong->Submit(QueuedJob());
  ASSERT_FALSE(submitted.ok());
  EXPECT_EQ(submitted.status().code(), absl::StatusCode::kUnauthenticated) << submitted.status();
  EXPECT_NE(submitted.status().message().find("wrong bearer token"), std::string::npos);
  EXPECT_EQ(wrong->ListWorkers().status().code(), absl::StatusCode::kUnauthenticated);
  v1::WorkerInfo info;
  info.set_worker_id("intruder");
  info.set_device("cpu");
  EXPECT_EQ(none->Register(info).status().code(), absl::StatusCode::kUnauthenticated);

  // Nothing changed: no job, no worker.
  auto jobs = good->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->jobs_size(), 0);
  auto workers = good->ListWorkers();
  ASSERT_TRUE(workers.ok()) << workers.status();
  EXPECT_EQ(workers->workers_size(), 0);

  // With the token everything works.
  auto job = good->Submit(QueuedJob());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);

  // grpc.health.v1 on the TLS port needs no token; on the probe port no TLS either.
  auto tls_only = RpcSecurity::LoadClient(ClientTls(""));
  ASSERT_TRUE(tls_only.ok());
  EXPECT_TRUE(ProbeHealth({address_, kReadinessService}, tls_only->get()).ok());
  const std::string probe_port = "127.0.0.1:" + std::to_string(server_->health_port());
  EXPECT_TRUE(ProbeHealth({probe_port, ""}, nullptr).ok());
  EXPECT_TRUE(ProbeHealth({probe_port, kReadinessService}, nullptr).ok());
}

TEST_F(CoordinatorServerTest, PlaintextClientCannotTalkToATlsServer) {
  ASSERT_NO_FATAL_FAILURE(Start(ServerTls(/*token=*/false)));
  auto plain = Client(RpcSecurityOptions());
  auto jobs = plain->ListJobs();
  ASSERT_FALSE(jobs.ok());
  EXPECT_EQ(jobs.status().code(), absl::StatusCode::kUnavailable) << jobs.status();
  auto submitted = plain->Submit(QueuedJob());
  EXPECT_FALSE(submitted.ok());
  // TLS without a token is enough for this server; nothing was queued by the plaintext try.
  auto tls = Client(ClientTls(""));
  auto listed = tls->ListJobs();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->jobs_size(), 0);
}

TEST_F(CoordinatorServerTest, ClientCertificatesWhenRequired) {
  ASSERT_NO_FATAL_FAILURE(Start(ServerTls(/*token=*/true, /*client_auth=*/true)));
  const testing::TestPki& pki = testing::DevCertificates();
  auto without = Client(ClientTls(pki.token, /*client_cert=*/false));
  EXPECT_FALSE(without->ListJobs().ok());
  auto with = Client(ClientTls(pki.token, /*client_cert=*/true));
  auto jobs = with->ListJobs();
  EXPECT_TRUE(jobs.ok()) << jobs.status();
}

TEST_F(CoordinatorServerTest, ClientVerifiesTheServerName) {
  ASSERT_NO_FATAL_FAILURE(Start(ServerTls(/*token=*/false)));
  RpcSecurityOptions s = ClientTls("");
  s.tls_server_name = "somebody-else.example";  // not in the certificate
  EXPECT_FALSE(Client(s)->ListJobs().ok());
  s.tls_server_name = "llava-coordinator";  // in the certificate
  auto jobs = Client(s)->ListJobs();
  EXPECT_TRUE(jobs.ok()) << jobs.status();
}

TEST_F(CoordinatorServerTest, MetricsShowJobsWorkersAndRpcs) {
  ASSERT_NO_FATAL_FAILURE(Start(RpcSecurityOptions()));
  auto client = Client(RpcSecurityOptions());
  auto job = client->Submit(QueuedJob());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_FALSE(client->GetJob("no-such-job", false).ok());

  testing::HttpReply reply = testing::HttpRequest(server_->metrics_port(), "GET", "/metrics");
  ASSERT_EQ(reply.code, 200) << reply.body;
  const std::string& m = reply.body;
  EXPECT_NE(m.find("llava_job_state{job_id=\"" + job->job_id() + "\",state=\"QUEUED\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("llava_job_step{job_id=\"" + job->job_id() + "\"} 0"), std::string::npos) << m;
  EXPECT_NE(m.find("llava_workers_alive 0"), std::string::npos) << m;
  EXPECT_NE(m.find("llava_rpc_requests_total{code=\"OK\",method=\"/llava.v1.JobService/SubmitJob\"} 1"),
            std::string::npos) << m;
  EXPECT_NE(m.find("llava_rpc_requests_total{code=\"NOT_FOUND\",method=\"/llava.v1.JobService/GetJob\"} 1"),
            std::string::npos) << m;
  EXPECT_NE(m.find("llava_rpc_latency_seconds_count{method=\"/llava.v1.JobService/SubmitJob\"} 1"),
            std::string::npos) << m;
  EXPECT_EQ(testing::HttpRequest(server_->metrics_port(), "GET", "/other").code, 404);
  EXPECT_EQ(testing::HttpRequest(server_->metrics_port(), "POST", "/metrics").code, 405);
}

TEST_F(CoordinatorServerTest, ShutdownFailsTheProbesAndWritesTheJobRecords) {
  ASSERT_NO_FATAL_FAILURE(Start(RpcSecurityOptions()));
  auto client = Client(RpcSecurityOptions());
  auto job = client->Submit(QueuedJob());
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string probe_port = "127.0.0.1:" + std::to_string(server_->health_port());
  ASSERT_TRUE(ProbeHealth({probe_port, kReadinessService}, nullptr).ok());
  const std::string record = dir_ + "/state/jobs/" + job->job_id() + ".json";
  ASSERT_TRUE(RemoveTree(record).ok());  // written at submission; Shutdown writes it again
  server_->Shutdown();
  EXPECT_TRUE(FileExists(record));
  absl::Status probe = ProbeHealth({probe_port, kReadinessService, milliseconds(500)}, nullptr);
  EXPECT_FALSE(probe.ok());
}

TEST(RpcSecurityOptionsTest, RefusesUnsafeOrIncompleteSettingsNamingTheFlag) {
  RpcSecurityOptions token_only;
  token_only.auth_token_file = "/some/token";
  absl::Status s = token_only.Validate(/*server=*/true);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--auth_token_file needs TLS"), std::string::npos) << s;
  EXPECT_FALSE(token_only.Validate(/*server=*/false).ok());

  RpcSecurityOptions half;
  half.tls_cert = "/x.crt";
  s = half.Validate(true);
  EXPECT_NE(s.message().find("--tls_cert and --tls_key go together"), std::string::npos) << s;

  RpcSecurityOptions client_auth;
  client_auth.tls_cert = "/x.crt";
  client_auth.tls_key = "/x.key";
  client_auth.tls_client_auth = true;
  s = client_auth.Validate(true);
  EXPECT_NE(s.message().find("--tls_client_auth needs --tls_ca"), std::string::npos) << s;
  EXPECT_TRUE(RpcSecurityOptions().Validate(true).ok());
}

TEST(RpcSecurityOptionsTest, UnreadableOrMalformedFilesAreNamed) {
  const testing::TestPki& pki = testing::DevCertificates();
  RpcSecurityOptions s;
  s.tls_cert = pki.dir + "/missing.crt";
  s.tls_key = pki.server_key;
  auto loaded = RpcSecurity::LoadServer(s);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("--tls_cert"), std::string::npos) << loaded.status();
  EXPECT_NE(loaded.status().message().find("missing.crt"), std::string::npos) << loaded.status();

  s.tls_cert = pki.token;  // not PEM
  loaded = RpcSecurity::LoadServer(s);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("is not a PEM file"), std::string::npos) << loaded.status();

  const std::string empty = testing::MakeTempDir("token") + "/empty";
  ASSERT_TRUE(WriteFileAtomic(empty, "\n").ok());
  s.tls_cert = pki.server_cert;
  s.auth_token_file = empty;
  loaded = RpcSecurity::LoadServer(s);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("is empty"), std::string::npos) << loaded.status();
}

}  // namespace
}  // namespace llava
