// The distributed system's commands: `coordinator`, `worker`, `launch` (a coordinator and
// N local workers running the main job), and the gRPC client (`submit`, `status`,
// `watch`, `list`, `cancel`, `fetch-checkpoint`, `workers`, `health`).
#pragma once

#include <vector>

#include "absl/status/status.h"

namespace llava {

absl::Status RunCoordinator(const std::vector<char*>& args);
absl::Status RunWorker(const std::vector<char*>& args);
absl::Status RunLaunch(const std::vector<char*>& args);
absl::Status RunSubmit(const std::vector<char*>& args);
absl::Status RunStatus(const std::vector<char*>& args);
absl::Status RunWatch(const std::vector<char*>& args);
absl::Status RunList(const std::vector<char*>& args);
absl::Status RunCancel(const std::vector<char*>& args);
absl::Status RunDelete(const std::vector<char*>& args);
absl::Status RunFetchCheckpoint(const std::vector<char*>& args);
absl::Status RunWorkers(const std::vector<char*>& args);
absl::Status RunHealth(const std::vector<char*>& args);

}  // namespace llava
