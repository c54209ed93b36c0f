// Elapsed time on the steady clock, in the units logs, metrics and reports use: the one
// definition of what every command, task and handler measures. Pure; thread-safe.
#pragma once

#include <chrono>

namespace llava {

inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace llava
