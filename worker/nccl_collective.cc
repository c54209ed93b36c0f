// NCCL for GPU workers. Rank 0 makes the unique id and publishes it in the coordinator's
// store; the communicator is non-blocking so that initialization and every all-reduce can
// be bounded by the group's timeout and aborted (ncclCommAbort) when a peer dies, instead
// of hanging the rank. Compiles and links wherever NCCL and the CUDA runtime are found;
// a build whose libtorch has no CUDA refuses at run time.
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "worker/collective.h"

#ifdef LLAVA_HAVE_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace llava {
namespace {

using Clock = std::chrono::steady_clock;

std::string NcclError(const char* what, ncclResult_t r) {
  return absl::StrCat("nccl: ", what, ": ", ncclGetErrorString(r));
}

class NcclCollective : public Collective {
 public:
  NcclCollective(ncclComm_t comm, int device, std::chrono::milliseconds timeout)
      : comm_(comm), device_(device), timeout_(timeout) {}

  ~NcclCollective() override {
    if (comm_ == nullptr) return;
    if (!broken_) {
      // Finalize flushes outstanding work; bounded like everything else.
      ncclResult_t r = ncclCommFinalize(comm_);
      if ((r == ncclSuccess || r == ncclInProgress) &&
          Wait("finalize", Clock::now() + timeout_).ok()) {
        ncclCommDestroy(comm_);
        return;
      }
      if (comm_ == nullptr) return;  // Wait() failed and aborted it
    }
    ncclCommAbort(comm_);
  }

  absl::Status AllReduceSum(at::Tensor& buffer) override {
    if (broken_ || abort_requested_) return absl::AbortedError("nccl: the group was aborted");
    if (!buffer.is_cuda() || !buffer.is_contiguous() || buffer.scalar_type() != at::kFloat) {
      return absl::InvalidArgumentError("nccl: all-reduce takes a contiguous float32 CUDA tensor");
    }
    cudaStream_t stream = StreamOf(buffer);
    const auto deadline = Clock::now() + timeout_;
    ncclResult_t r = ncclAllReduce(buffer.data_ptr(), buffer.data_ptr(), buffer.numel(), ncclFloat,
                                   ncclSum, comm_, stream);
    return Complete("all-reduce", r, stream, deadline);
  }

  absl::Status Broadcast(at::Tensor& buffer, int64_t root) override {
    if (broken_ || abort_requested_) return absl::AbortedError("nccl: the group was aborted");
    if (!buffer.is_cuda() || !buffer.is_contiguous()) {
      return absl::InvalidArgumentError("nccl: broadcast takes a contiguous CUDA tensor");
    }
    int ranks = 0;
    if (ncclCommCount(comm_, &ranks) != ncclSuccess || root < 0 || root >= ranks) {
      return absl::InvalidArgumentError(
          absl::StrCat("nccl: broadcast root ", root, " of world ", ranks));
    }
    if (buffer.nbytes() == 0) return absl::OkStatus();
    cudaStream_t stream = StreamOf(buffer);
    const auto deadline = Clock::now() + timeout_;
    ncclResult_t r = ncclBroadcast(buffer.data_ptr(), buffer.data_ptr(), buffer.nbytes(), ncclUint8,
                                   static_cast<int>(root), comm_, stream);
    return Complete("broadcast", r, stream, deadline);
  }

  void Abort() override { abort_requested_ = true; }

  // Polls the communicator until its pending operation leaves ncclInProgress.
  absl::Status Wait(const char* what, Clock::time_point deadline) {
    while (true) {
      ncclResult_t state = ncclSuccess;
      ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) return Fail(NcclError(what, r));
      if (state == ncclSuccess) return absl::OkStatus();
      if (state != ncclInProgress) return Fail(NcclError(what, state));
      if (abort_requested_) return Fail(absl::StrCat("nccl: ", what, " aborted"));
      if (Clock::now() > deadline) {
        return Fail(absl::StrCat("nccl: ", what, " timed out after ", timeout_.count(), " ms"));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

 private:
  // On the stream that produced the tensor (the gradients: the backward pass's): NCCL's
  // kernels are ordered after it without a host synchronization.
  static cudaStream_t StreamOf(const at::Tensor& buffer) {
#ifdef LLAVA_HAVE_CUDA
    return c10::cuda::getCurrentCUDAStream(buffer.device().index()).stream();
#else
    (void)buffer;
    return nullptr;
#endif
  }

  // Waits for an enqueued collective (`enqueued`: what its call returned) to finish on
  // `stream`: the stream drains unless a peer died (then the async error is set).
  absl::Status Complete(const char* what, ncclResult_t enqueued, cudaStream_t stream,
                        Clock::time_point deadline) {
    if (enqueued != ncclSuccess && enqueued != ncclInProgress)
      return Fail(NcclError(what, enqueued));
    if (absl::Status s = Wait(what, deadline); !s.ok()) return s;
    while (true) {
      cudaError_t q = cudaStreamQuery(stream);
      if (q == cudaSuccess) return absl::OkStatus();
      if (q != cudaErrorNotReady)
        return Fail(absl::StrCat("nccl: stream: ", cudaGetErrorString(q)));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) return Fail(NcclError("peer", async));
      if (abort_requested_) return Fail("nccl: aborted");
      if (Clock::now() > deadline) {
        return Fail(absl::StrCat("nccl: ", what, " did not complete within ", timeout_.count(),
                                 " ms (a peer died or stalled)"));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  absl::Status Fail(const std::string& message) {
    if (!broken_) {
      broken_ = true;
      ncclCommAbort(comm_);  // frees the rank from any pending NCCL kernel
      comm_ = nullptr;
    }
    return absl::UnavailableError(message);
  }

  ncclComm_t comm_;
  int device_;
  std::chrono::milliseconds timeout_;
  bool broken_ = false;
  std::atomic<bool> abort_requested_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> CreateNcclCollective(const CollectiveOptions& options,
                                                                 RendezvousClient* store) {
#ifndef LLAVA_HAVE_CUDA
  return absl::FailedPreconditionError("nccl: this build's libtorch has no CUDA");
#endif
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || options.cuda_device >= devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("nccl: no CUDA device ", options.cuda_device));
  }
  cudaSetDevice(options.cuda_device);
  const std::string key = options.prefix + "nccl_unique_id";
  ncclUniqueId id;
  if (options.rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) return absl::UnavailableError(NcclError("unique id", r));
    absl::Status s = store->Set(key, std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
    if (!s.ok()) return s;
  } else {
    auto value = store->Get(key, options.timeout);
    if (!value.ok()) return value.status();
    if (value->size() != sizeof(id)) {
      return absl::DataLossError(absl::StrCat("nccl: the unique id in the store is ", value->size(),
                                              " bytes, not ", sizeof(id)));
    }
    std::memcpy(&id, value->data(), sizeof(id));
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, static_cast<int>(options.world_size), id,
                                          static_cast<int>(options.rank), &config);
  if (r != ncclSuccess && r != ncclInProgress) return absl::UnavailableError(NcclError("init", r));
  auto collective = std::make_unique<NcclCollective>(comm, options.cuda_device, options.timeout);
  absl::Status s = collective->Wait("init", Clock::now() + options.timeout);
  if (!s.ok()) return s;
  LM_LOG(INFO) << "nccl group " << options.prefix << ": rank " << options.rank << " of "
               << options.world_size << " on cuda:" << options.cuda_device;
  return std::unique_ptr<Collective>(std::move(collective));
}

}  // namespace llava
