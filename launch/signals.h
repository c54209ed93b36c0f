// SIGINT/SIGTERM turn into a flag that long-running commands poll (the coordinator,
// workers and `launch` then stop cleanly). Install once per process; async-signal-safe.
#pragma once

#include <atomic>

namespace llava {

void InstallStopHandlers();
const std::atomic<bool>& StopRequested();

}  // namespace llava
