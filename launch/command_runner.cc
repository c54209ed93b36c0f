#include "launch/command_runner.h"

#include <algorithm>
#include <cstring>
#include <iostream>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace llava {
namespace {

std::vector<std::string>& MutableCommandLine() {
  static std::vector<std::string> line;
  return line;
}

// Parses flags for `command` from argv (argv[0] is the command name) and runs it.
int RunCommand(const CommandSet& set, const Command& command, int argc, char** argv) {
  static const Command* current = nullptr;
  current = &command;
  MutableCommandLine().assign(argv, argv + argc);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    if (absl::StrContains(file, "launch/flags_common") ||
        absl::StrContains(file, "launch/flags_shared")) {
      return true;
    }
    for (const std::string& f : current->flag_files) {
      if (absl::StrContains(file, f)) return true;
    }
    return false;
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.normalize_filename = [](absl::string_view f) { return std::string(f); };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(absl::StrCat(set.program, " ", command.name, ": ", command.help));
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  absl::Status status;
  try {
    status = command.run(args);
  } catch (const std::exception& e) {
    status = absl::InternalError(set.describe_exception != nullptr
                                     ? set.describe_exception(e)
                                     : absl::StrCat("unexpected error: ", e.what()));
  }
  if (!status.ok()) {
    std::cerr << set.program << " " << command.name << ": " << status.message() << "\n";
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace

const std::vector<std::string>& CommandLine() { return MutableCommandLine(); }

int RunCommandLine(const CommandSet& set, int argc, char** argv) {
  auto usage = [&](std::ostream& os) {
    os << "usage: " << set.program << " <command> [--flags]\n\ncommands:\n";
    for (const Command& c : set.commands) {
      os << "  " << c.name << std::string(18 - std::min<size_t>(17, strlen(c.name)), ' ') << c.help
         << "\n";
    }
    os << "\n`" << set.program << " <command> --help` lists the flags.\n";
  };
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  for (const Command& c : set.commands) {
    if (c.name == std::string(argv[1])) return RunCommand(set, c, argc - 1, argv + 1);
  }
  std::cerr << set.program << ": unknown command '" << argv[1] << "'\n\n";
  usage(std::cerr);
  return 2;
}

}  // namespace llava
