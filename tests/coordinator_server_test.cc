// The coordinator server in-process, with its real gRPC, health and metrics ports on
// loopback: TLS and the bearer token (refused calls get UNAUTHENTICATED and change
// nothing; plaintext against TLS fails; client certificates when required), the
// plaintext probe port, Prometheus metrics of jobs, workers and RPCs, and a shutdown
// that fails the probes and writes the job records.
#include "coordinator/coordinator_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>
#include <tuple>

#include "common/file_util.h"
#include "common/net/health_server.h"
#include "test_util.h"
#include "worker/coordinator_client.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::StatusIs;
using ::testing::HasSubstr;

using std::chrono::milliseconds;

class CoordinatorServerTest : public ::testing::Test {
 protected:
  // Starts a coordinator with `security` on an ephemeral port, plus probe and metrics ports.
  void Start(const RpcSecurityOptions& security,
             const std::function<void(CoordinatorOptions*)>& adjust = nullptr) {
    if (dir_.empty()) dir_ = testing::MakeTempDir("coordinator-server");
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
    if (adjust) adjust(&o);
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

  // A tokens file with one credential per role (and a second client), and a token file
  // per credential for the clients.
  struct Tokens {
    std::string server_file, alice, bob, worker, root;
  };
  Tokens MakeTokens() {
    if (dir_.empty()) dir_ = testing::MakeTempDir("coordinator-server");
    Tokens t;
    t.server_file = dir_ + "/tokens";
    EXPECT_TRUE(WriteFileAtomic(t.server_file,
                                "# role name token\n"
                                "client alice alice-token-1\n"
                                "client bob bob-token-2\n"
                                "worker pool worker-token-3\n"
                                "admin root root-token-4\n")
                    .ok());
    for (auto [name, token, out] :
         {std::tuple{"alice", "alice-token-1", &t.alice}, std::tuple{"bob", "bob-token-2", &t.bob},
          std::tuple{"worker", "worker-token-3", &t.worker},
          std::tuple{"root", "root-token-4", &t.root}}) {
      *out = dir_ + "/" + name + ".token";
      EXPECT_TRUE(WriteFileAtomic(*out, std::string(token) + "\n").ok());
    }
    return t;
  }
  static v1::WorkerInfo Worker(const std::string& id) {
    v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_device("cpu");
    info.set_collective("gloo");
    info.set_model("demo");
    info.set_hidden_size(128);
    info.set_train_images(100);
    info.set_test_images(10);
    return info;
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
  EXPECT_THAT(submitted, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_NE(submitted.status().message().find("missing bearer token"), std::string::npos);
  submitted = wrong->Submit(QueuedJob());
  ASSERT_FALSE(submitted.ok());
  EXPECT_THAT(submitted, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_NE(submitted.status().message().find("wrong bearer token"), std::string::npos);
  EXPECT_THAT(wrong->ListWorkers(), StatusIs(absl::StatusCode::kUnauthenticated));
  v1::WorkerInfo info;
  info.set_worker_id("intruder");
  info.set_device("cpu");
  EXPECT_THAT(none->Register(info), StatusIs(absl::StatusCode::kUnauthenticated));

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
  EXPECT_THAT(jobs, StatusIs(absl::StatusCode::kUnavailable));
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
  EXPECT_NE(m.find("llava_job_state{job_id=\"" + job->job_id() + "\",state=\"QUEUED\"} 1"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("llava_job_step{job_id=\"" + job->job_id() + "\"} 0"), std::string::npos) << m;
  EXPECT_NE(m.find("llava_workers_alive 0"), std::string::npos) << m;
  EXPECT_NE(
      m.find("llava_rpc_requests_total{code=\"OK\",method=\"/llava.v1.JobService/SubmitJob\"} 1"),
      std::string::npos)
      << m;
  EXPECT_NE(
      m.find(
          "llava_rpc_requests_total{code=\"NOT_FOUND\",method=\"/llava.v1.JobService/GetJob\"} 1"),
      std::string::npos)
      << m;
  EXPECT_NE(m.find("llava_rpc_latency_seconds_count{method=\"/llava.v1.JobService/SubmitJob\"} 1"),
            std::string::npos)
      << m;
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

// Issue 15, finding 2: workers and clients hold different credentials; a client cannot
// act as a worker, a worker cannot submit, a client cannot cancel another's job, an admin
// can; worker calls are bound to their session.
TEST_F(CoordinatorServerTest, RolesDecideWhatEachCredentialMayDo) {
  const Tokens t = MakeTokens();
  RpcSecurityOptions server = ServerTls(/*token=*/false);
  server.auth_tokens_file = t.server_file;
  ASSERT_NO_FATAL_FAILURE(Start(server));
  auto alice = Client(ClientTls(t.alice));
  auto bob = Client(ClientTls(t.bob));
  auto worker = Client(ClientTls(t.worker));
  auto intruder = Client(ClientTls(t.worker));
  auto root = Client(ClientTls(t.root));

  EXPECT_THAT(worker->Submit(QueuedJob()), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(worker->ListJobs(), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(alice->Register(Worker("w0")), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(alice->Set("train-000001/attempt-1/x", "v"),
              StatusIs(absl::StatusCode::kPermissionDenied));

  auto registered = worker->Register(Worker("w0"));
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_EQ(registered->session_id().size(), 32u);
  worker->SetSession("w0", registered->session_id());
  // Nobody takes over a live worker's id.
  EXPECT_THAT(intruder->Register(Worker("w0")), StatusIs(absl::StatusCode::kAlreadyExists));
  auto other = intruder->Register(Worker("w1"));
  ASSERT_TRUE(other.ok());
  intruder->SetSession("w1", other->session_id());

  v1::SubmitJobRequest running = QueuedJob();
  running.set_wait_for_workers(false);
  running.mutable_train()->set_model("demo");
  auto job = alice->Submit(running);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->submitter(), "alice");
  ASSERT_EQ(job->state(), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(job->worker_ids(0), "w0") << job->ShortDebugString();

  // The other worker-role session may neither upload for rank 0 nor use its rendezvous,
  // nor leave or heartbeat for w0 with a guessed session.
  v1::CheckpointHeader forged;
  forged.mutable_ref()->set_job_id(job->job_id());
  forged.mutable_ref()->set_attempt(1);
  forged.set_step(999);
  forged.set_final(true);
  EXPECT_THAT(intruder->UploadCheckpoint(forged, "forged bytes"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(worker->UploadCheckpoint(forged, "step 999 of a 1-step plan"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  const std::string key = job->job_id() + "/attempt-1/nccl_unique_id";
  EXPECT_THAT(intruder->Set(key, "poison"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_TRUE(worker->Set(key, "real").ok());
  EXPECT_THAT(intruder->Set(job->job_id() + "/attempt-2/nccl_unique_id", "pre-set"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(intruder->Leave("w0", "w0#1", "guessed"), StatusIs(absl::StatusCode::kNotFound));
  v1::HeartbeatRequest beat;
  beat.set_worker_id("w0");
  beat.set_session_id("w0#1");
  EXPECT_THAT(intruder->Heartbeat(beat), StatusIs(absl::StatusCode::kNotFound));

  // Only alice (or an admin) manages alice's job.
  EXPECT_THAT(bob->CancelJob(job->job_id()), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(alice->GetJob(job->job_id(), false)->state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(bob->DeleteJob(job->job_id()), StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_TRUE(root->CancelJob(job->job_id()).ok());
  EXPECT_TRUE(alice->DeleteJob(job->job_id()).ok());
  EXPECT_THAT(alice->GetJob(job->job_id(), false), StatusIs(absl::StatusCode::kNotFound));
}

// Issue 15, findings 1 and 5: hostile fields are refused with the field named, and the
// server keeps serving; lists come in pages whatever their size.
TEST_F(CoordinatorServerTest, HostileFieldsAreRefusedAndTheServerKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(Start(RpcSecurityOptions()));
  auto client = Client(RpcSecurityOptions());
  v1::WorkerInfo huge = Worker("w0");
  huge.set_model(std::string(7 << 20, 'm'));
  auto r = client->Register(huge);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model")));
  r = client->Register(Worker("w0\nI20261202 forged log line"));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("worker_id")));
  v1::WorkerInfo negative = Worker("w0");
  negative.set_train_images(-5);
  EXPECT_THAT(client->Register(negative),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("train_images")));
  v1::WorkerInfo huge_count = Worker("w0");  // found by fuzz_coordinator: an 8 TB data plan
  huge_count.set_train_images(int64_t{1} << 40);
  EXPECT_THAT(client->Register(huge_count),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("train_images")));
  v1::SubmitJobRequest poison = QueuedJob();
  poison.mutable_train()->set_batch_size(4611686018427387904LL);
  poison.mutable_train()->set_grad_accum(4);
  EXPECT_THAT(client->Submit(poison),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch_size")));
  v1::SubmitJobRequest long_question = QueuedJob();
  long_question.mutable_train()->add_questions(std::string(7 << 20, 'q'));
  EXPECT_THAT(client->Submit(long_question),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("question")));

  for (int i = 0; i < 150; ++i) ASSERT_TRUE(client->Register(Worker("w" + std::to_string(i))).ok());
  for (int i = 0; i < 120; ++i) ASSERT_TRUE(client->Submit(QueuedJob()).ok());
  auto workers = client->ListWorkers();  // three pages of 100, 50 and none
  ASSERT_TRUE(workers.ok()) << workers.status();
  EXPECT_EQ(workers->workers_size(), 150);
  auto jobs = client->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->jobs_size(), 120);
  EXPECT_EQ(jobs->jobs(0).job_id(), "train-000001");
}

// Issue 15, finding 5: waiting calls are capped, and every wait ends at shutdown instead
// of holding the process for its whole wait.
TEST_F(CoordinatorServerTest, WaitingCallsAreCappedAndShutdownEndsThem) {
  ASSERT_NO_FATAL_FAILURE(
      Start(RpcSecurityOptions(), [](CoordinatorOptions* o) { o->max_long_polls = 2; }));
  auto client = Client(RpcSecurityOptions());
  auto queued = client->Submit(QueuedJob());
  ASSERT_TRUE(queued.ok());
  auto registered = client->Register(Worker("w0"));
  ASSERT_TRUE(registered.ok());
  client->SetSession("w0", registered->session_id());
  v1::SubmitJobRequest running = QueuedJob();
  running.set_wait_for_workers(false);
  auto job = client->Submit(running);
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(job->state(), v1::JOB_STATE_RUNNING);

  absl::Status watch_status, get_status;
  std::thread watcher([&] {
    watch_status =
        client->WatchJob(queued->job_id(), std::chrono::seconds(20), [](const v1::JobStatus&) {})
            .status();
  });
  std::thread getter([&] {
    get_status =
        client->Get(job->job_id() + "/attempt-1/never-set", std::chrono::minutes(10)).status();
  });
  // Both hold their places; a third waiting call is refused.
  absl::Status third;
  auto other = Client(RpcSecurityOptions());
  other->SetSession("w0", registered->session_id());
  for (int i = 0; i < 100 && !absl::IsResourceExhausted(third); ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    third = other->Get(job->job_id() + "/attempt-1/other", milliseconds(200)).status();
  }
  EXPECT_THAT(third, StatusIs(absl::StatusCode::kResourceExhausted));
  // Shutdown ends both waits at once: the rendezvous wait would otherwise hold the server
  // for its whole bound (120 s).
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  getter.join();
  watcher.join();
  EXPECT_FALSE(get_status.ok());
  EXPECT_FALSE(watch_status.ok());
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
  EXPECT_NE(loaded.status().message().find("is not a PEM file"), std::string::npos)
      << loaded.status();

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
