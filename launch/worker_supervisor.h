// A worker pod with several GPUs (`llava-mnist worker --gpus all|N`): one worker process
// per GPU under this supervising process, each registered as its own worker
// (<worker_id>-gpu<i>) on its own device, probe and metrics ports (the given port + i).
// Processes rather than threads driving G devices: each rank keeps the one-device worker
// that is tested everywhere else, a crash takes one rank, and NCCL between processes of a
// node still uses its fast paths (P2P/NVLink, shared memory). The supervisor forwards
// SIGTERM/SIGINT so that all leave the coordinator together, and when any of them ends by
// itself it stops the rest and fails, so that the pod restarts whole. One thread.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

struct SupervisorOptions {
  int64_t gpus = 0;             // ranks to start, >= 1
  std::string worker_id;        // the pod's name; ranks are <worker_id>-gpu<i>
  std::string device = "cuda";  // "cpu" (tests: every rank on the CPU) or "cuda"
  std::string health_listen;    // HOST:PORT of rank 0; rank i takes PORT + i ("" : none)
  std::string metrics_listen;   // likewise
  // How long the ranks get to leave after SIGTERM before they are killed.
  std::chrono::milliseconds grace{std::chrono::seconds(30)};

  absl::Status Validate() const;
};

// HOST:PORT with PORT + offset (port 0 stays 0: any free port); "" stays "".
absl::StatusOr<std::string> OffsetListen(const std::string& listen, int64_t offset);

// Starts the ranks as `executable` with `command_line` (the supervisor's own, argv[0] the
// command name) and each rank's overrides appended (later flags win), and waits until
// `stop` (then every rank is stopped; OK if all exited 0) or until a rank ends by itself
// (the others are stopped; an error naming it).
absl::Status RunWorkerSupervisor(const SupervisorOptions& options, const std::string& executable,
                                 const std::vector<std::string>& command_line,
                                 const std::atomic<bool>& stop);

}  // namespace llava
