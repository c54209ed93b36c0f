// The subcommands of the llava-mnist binary and the one boundary where they run: flags
// parsed with abseil, absl::Status turned into an exit code and a message, and any
// libtorch (c10::Error) or other exception caught and reported instead of crashing.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace llava {

struct Command {
  const char* name;
  const char* help;
  // Source files (substrings of their paths) whose flags `--help` lists for this
  // command, besides the flags shared by every command.
  std::vector<std::string> flag_files;
  // Runs with the positional arguments left after flag parsing (argv[0] first).
  absl::Status (*run)(const std::vector<char*>& args);
};

const std::vector<Command>& AllCommands();

// The command line of the command running now, as given (argv[0] is the command name):
// what a process that starts copies of itself (a multi-GPU worker) passes on.
const std::vector<std::string>& CommandLine();

// Parses flags for `command` from argv (argv[0] is the command name) and runs it.
// Returns the process exit code: 0 on success, 1 on failure, 2 on bad usage.
int RunCommand(const Command& command, int argc, char** argv);

}  // namespace llava
