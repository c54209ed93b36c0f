// The one boundary where a binary's subcommands run (llava-mnist's and llava-ctl's):
// dispatch by name, flags parsed with abseil (`--help` lists the command's own), an
// absl::Status turned into an exit code and a message, and any exception caught and
// reported instead of crashing. No libtorch: a binary that has it passes a describer for
// its exceptions. Called from main only (flag parsing is process-wide).
#pragma once

#include <exception>
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

struct CommandSet {
  const char* program;  // "llava-mnist", "llava-ctl"
  std::vector<Command> commands;
  // The message for an exception a command let escape; null: "unexpected error: what()".
  std::string (*describe_exception)(const std::exception& e) = nullptr;
};

// The command line of the command running now, as given (argv[0] is the command name):
// what a process that starts copies of itself (a multi-GPU worker) passes on.
const std::vector<std::string>& CommandLine();

// main(): runs argv[1] of `set` with the rest of argv, or prints the usage. Returns the
// process exit code: 0 on success, 1 on failure, 2 on bad usage.
int RunCommandLine(const CommandSet& set, int argc, char** argv);

}  // namespace llava
