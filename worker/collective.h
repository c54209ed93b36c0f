// A rank's collective group: the projector gradients of a training attempt, the projector
// of an eval attempt. Gloo (CPU tensors over TCP) or NCCL (CUDA tensors), met through the
// coordinator's rendezvous store. Every wait is bounded by the group's timeout: a dead peer
// fails the collective instead of hanging it.
// One owner thread; Abort() may be called from any thread.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/rendezvous_client.h"

namespace llava {

struct CollectiveOptions {
  std::string engine = "gloo";  // "gloo" or "nccl"
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string prefix;  // the attempt's key prefix in the store
  std::chrono::milliseconds timeout{60000};
  std::string gloo_host = "127.0.0.1";  // address peers reach this rank's Gloo transport on
  int cuda_device = 0;                  // NCCL: the rank's GPU
};

class Collective {
 public:
  virtual ~Collective() = default;
  // Sums `buffer` (contiguous float32, on the CPU for Gloo and on the rank's GPU for
  // NCCL) over the ranks, in place. On error the group is unusable: make a new one.
  virtual absl::Status AllReduceSum(at::Tensor& buffer) = 0;
  // Copies rank `root`'s `buffer` (contiguous, any dtype, moved as bytes; on the CPU for
  // Gloo and on the rank's GPU for NCCL) into every rank's, in place: every rank passes a
  // buffer of the same byte size. On error the group is unusable, as above.
  virtual absl::Status Broadcast(at::Tensor& buffer, int64_t root) = 0;
  // Makes a pending and any later collective fail promptly, from any thread (NCCL:
  // ncclCommAbort; Gloo: the group's sockets are shut down), so that the survivors of a
  // hung rank leave the collective when the coordinator says so, not at the timeout.
  // Gloo: an operation cut short may go on writing its buffer until the group's timeout.
  virtual void Abort() = 0;
};

// Meets the group (blocking up to options.timeout) and returns this rank's member. Gloo:
// the process ignores SIGPIPE from then on (unless it set its own disposition), so that a
// write to a peer that is gone fails the collective instead of killing the process.
absl::StatusOr<std::unique_ptr<Collective>> CreateCollective(const CollectiveOptions& options,
                                                             RendezvousClient* store);

// Which engines this build has ("gloo", "nccl").
bool HaveEngine(const std::string& engine);

}  // namespace llava
