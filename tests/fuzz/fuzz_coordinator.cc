// libFuzzer target: the coordinator's unary RPC handlers, called directly (no network)
// on fresh real components per input: WorkerRegistry, RendezvousStore, CheckpointStore
// (on a temp dir), JobScheduler and CoordinatorMetrics, as CoordinatorServer wires them.
// An input is a sequence of records, each [handler byte][2-byte little-endian length]
// [request in binary protobuf]; the handler byte picks one of kHandlers (the last one
// ticks the scheduler `length` seconds in the future instead). After every record the
// scheduler ticks at the present, as the server's scheduler thread does; at the end the
// metrics are collected as a Prometheus scrape would. Long polls are cut to 0 ms. The
// checkpoint store holds one checkpoint, of job "train-000900", for eval jobs to use.
#include <atomic>
#include <glog/logging.h>
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/server_context.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "common/file_util.h"
#include "common/sha256.h"
#include "coordinator/checkpoint_store.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/job_scheduler.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/worker_registry.h"

namespace {

using namespace llava;  // NOLINT: the handlers' types, in one test file

std::string g_state_dir;

struct Coordinator {
  WorkerRegistry registry{std::chrono::milliseconds(30000)};
  RendezvousStore rendezvous;
  LongPollGate long_polls{8};
  std::atomic<bool> stopping{false};
  std::unique_ptr<CheckpointStore> checkpoints;
  std::unique_ptr<JobScheduler> scheduler;
  std::shared_ptr<prometheus::Registry> metrics_registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<CoordinatorMetrics> metrics;
  std::unique_ptr<JobServiceImpl> jobs;
  std::unique_ptr<WorkerServiceImpl> workers;
  std::unique_ptr<RendezvousServiceImpl> store;
  std::unique_ptr<CheckpointServiceImpl> checkpoint_service;

  Coordinator() {
    auto opened = CheckpointStore::Open(g_state_dir + "/checkpoints");
    if (!opened.ok()) {
      std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
      std::abort();
    }
    checkpoints = *std::move(opened);
    SchedulerOptions so;
    so.restart_wait = std::chrono::milliseconds(60000);
    // Job records stay in memory: every input starts from an empty coordinator.
    scheduler = std::make_unique<JobScheduler>(so, &registry, checkpoints.get(), &rendezvous);
    metrics = std::make_unique<CoordinatorMetrics>(*metrics_registry, scheduler.get(), &registry);
    Components c{&registry,     scheduler.get(), &rendezvous, checkpoints.get(),
                 metrics.get(), &long_polls,     &stopping};
    ServiceOptions o;
    jobs = std::make_unique<JobServiceImpl>(c, o);
    workers = std::make_unique<WorkerServiceImpl>(c, o);
    store = std::make_unique<RendezvousServiceImpl>(c, o);
    checkpoint_service = std::make_unique<CheckpointServiceImpl>(c, o);
  }
};

template <typename Request, typename Response, typename Service>
void Call(Service* service,
          grpc::Status (Service::*handler)(grpc::ServerContext*, const Request*, Response*),
          const std::string& bytes, void (*adjust)(Request*) = nullptr) {
  Request request;
  if (!request.ParseFromString(bytes)) return;
  if (adjust != nullptr) adjust(&request);
  grpc::ServerContext context;
  Response response;
  (void)(service->*handler)(&context, &request, &response);
}

void Dispatch(Coordinator& c, uint8_t handler, const std::string& bytes) {
  switch (handler % 15) {
    case 0:
      return Call(c.jobs.get(), &JobServiceImpl::SubmitJob, bytes);
    case 1:
      return Call(c.jobs.get(), &JobServiceImpl::GetJob, bytes);
    case 2:
      return Call(c.jobs.get(), &JobServiceImpl::ListJobs, bytes);
    case 3:
      return Call(c.jobs.get(), &JobServiceImpl::CancelJob, bytes);
    case 4:
      return Call(c.workers.get(), &WorkerServiceImpl::RegisterWorker, bytes);
    case 5:
      return Call<v1::HeartbeatRequest, v1::HeartbeatResponse>(
          c.workers.get(), &WorkerServiceImpl::Heartbeat, bytes,
          [](v1::HeartbeatRequest* r) { r->set_wait_ms(0); });
    case 6:
      return Call(c.workers.get(), &WorkerServiceImpl::ReportTaskResult, bytes);
    case 7:
      return Call(c.workers.get(), &WorkerServiceImpl::GetShard, bytes);
    case 8:
      return Call(c.workers.get(), &WorkerServiceImpl::ListWorkers, bytes);
    case 9:
      return Call(c.workers.get(), &WorkerServiceImpl::LeaveWorker, bytes);
    case 10:
      return Call(c.store.get(), &RendezvousServiceImpl::Set, bytes);
    case 11:
      return Call<v1::StoreGetRequest, v1::StoreGetResponse>(
          c.store.get(), &RendezvousServiceImpl::Get, bytes,
          [](v1::StoreGetRequest* r) { r->set_wait_ms(0); });
    case 12:
      return Call(c.checkpoint_service.get(), &CheckpointServiceImpl::ListCheckpoints, bytes);
    case 14:
      return Call(c.jobs.get(), &JobServiceImpl::DeleteJob, bytes);
    case 13:
      // Time passing: lost workers, restart waits running out.
      c.scheduler->Tick(Clock::now() + std::chrono::seconds(bytes.size()));
      return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = google::GLOG_ERROR;    // registrations log at INFO
  google::protobuf::SetLogHandler(nullptr);  // every invalid UTF-8 string would log
  char tmpl[] = "/tmp/fuzz_coordinator.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  g_state_dir = tmpl;
  auto store = CheckpointStore::Open(g_state_dir + "/checkpoints");
  auto bytes = ReadFile(LLAVA_FUZZ_CORPUS_DIR "/fuzz_safetensors/projector.safetensors");
  if (!store.ok() || !bytes.ok() ||
      !(*store)->Put("train-000900", 10, /*final=*/true, *bytes, Sha256Hex(*bytes)).ok()) {
    std::fprintf(stderr, "cannot store the eval jobs' checkpoint\n");
    std::abort();
  }
  std::atexit([] {
    std::error_code ignored;
    std::filesystem::remove_all(g_state_dir, ignored);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Coordinator c;
  size_t pos = 0;
  while (pos + 3 <= size) {
    const uint8_t handler = data[pos];
    const size_t len = std::min<size_t>(data[pos + 1] | data[pos + 2] << 8, size - pos - 3);
    const std::string bytes(reinterpret_cast<const char*>(data + pos + 3), len);
    pos += 3 + len;
    Dispatch(c, handler, bytes);
    c.scheduler->Tick(Clock::now());
  }
  (void)c.metrics_registry->Collect();
  (void)c.metrics->cluster()->Collect();
  return 0;
}
