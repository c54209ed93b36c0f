#include "launch/worker_supervisor.h"

#include <signal.h>

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "launch/process.h"

namespace llava {

absl::Status SupervisorOptions::Validate() const {
  if (gpus < 1 || gpus > 64) {
    return absl::InvalidArgumentError(absl::StrCat("--gpus must be 1-64 (or all), got ", gpus));
  }
  if (worker_id.empty()) return absl::InvalidArgumentError("--worker_id is empty");
  if (device != "cpu" && device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpus: ranks run on cuda (or cpu), not ", device));
  }
  LM_RETURN_IF_ERROR(OffsetListen(health_listen, gpus - 1).status());
  return OffsetListen(metrics_listen, gpus - 1).status();
}

absl::StatusOr<std::string> OffsetListen(const std::string& listen, int64_t offset) {
  if (listen.empty()) return listen;
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", listen, "' is not HOST:PORT"));
  }
  if (port == 0) return listen;
  if (port + offset > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", listen, "': no room for ", offset + 1, " ports"));
  }
  return absl::StrCat(listen.substr(0, colon + 1), port + offset);
}

absl::Status RunWorkerSupervisor(const SupervisorOptions& o, const std::string& executable,
                                 const std::vector<std::string>& command_line,
                                 const std::atomic<bool>& stop) {
  LM_RETURN_IF_ERROR(o.Validate());
  std::vector<ChildProcess> ranks;
  std::vector<std::string> ids;
  auto stop_all = [&] {
    for (ChildProcess& r : ranks) r.Signal(SIGTERM);  // all leave together
    for (ChildProcess& r : ranks) r.Stop(o.grace);
  };
  for (int64_t i = 0; i < o.gpus; ++i) {
    std::vector<std::string> argv{executable};
    argv.insert(argv.end(), command_line.begin(), command_line.end());
    ids.push_back(absl::StrCat(o.worker_id, "-gpu", i));
    argv.push_back("--gpus=");
    argv.push_back("--worker_id=" + ids.back());
    argv.push_back(o.device == "cpu" ? std::string("--device=cpu")
                                     : absl::StrCat("--device=cuda:", i));
    LM_ASSIGN_OR_RETURN(std::string health, OffsetListen(o.health_listen, i));
    LM_ASSIGN_OR_RETURN(std::string metrics, OffsetListen(o.metrics_listen, i));
    argv.push_back("--health_listen=" + health);
    argv.push_back("--metrics_listen=" + metrics);
    auto rank = ChildProcess::Spawn(argv, /*log_path=*/"");
    if (!rank.ok()) {
      stop_all();
      return rank.status();
    }
    ranks.push_back(std::move(*rank));
    LM_LOG(INFO) << "worker supervisor: started " << ids.back() << " (pid " << ranks.back().pid()
                 << ")";
  }
  while (!stop.load()) {
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (ranks[i].Running()) continue;
      const int status = ranks[i].exit_status();
      stop_all();
      return absl::UnavailableError(
          absl::StrCat(ids[i], " ended by itself (exit status ", status,
                       "): stopping every rank so that the pod restarts"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  LM_LOG(INFO) << "worker supervisor: stopping " << ranks.size() << " ranks (signal)";
  stop_all();
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i].exit_status() != 0) {
      return absl::InternalError(
          absl::StrCat(ids[i], " exited with status ", ranks[i].exit_status()));
    }
  }
  return absl::OkStatus();
}

}  // namespace llava
