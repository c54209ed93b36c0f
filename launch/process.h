// Child processes of `launch`, of a multi-GPU worker's supervisor and of integration
// tests: spawned with their output in a log file (or the parent's own stdout and stderr),
// killed if the parent dies (PR_SET_PDEATHSIG), stopped with SIGTERM then SIGKILL after a
// grace period. One owner thread per ChildProcess.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace llava {

class ChildProcess {
 public:
  // argv[0] is the executable's path. `log_path` empty: the child writes where the parent
  // does.
  static absl::StatusOr<ChildProcess> Spawn(const std::vector<std::string>& argv,
                                            const std::string& log_path);
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // Reaps the child if it exited; false once it has.
  bool Running();
  int exit_status() const { return exit_status_; }
  void Signal(int signal);
  // SIGTERM, then SIGKILL after `grace`; waits for the exit.
  void Stop(std::chrono::milliseconds grace);

 private:
  pid_t pid_ = -1;
  int exit_status_ = -1;
  std::string log_path_;
};

// This program's own executable (/proc/self/exe).
std::string SelfExecutable();

}  // namespace llava
