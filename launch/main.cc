// llava-mnist: one binary, one subcommand per job. Dispatch only; each subcommand lives
// in its own file and registers itself in commands.cc.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "common/log.h"
#include "launch/commands.h"

int main(int argc, char** argv) {
  llava::log::InitLogging(argv[0]);
  const std::vector<llava::Command>& commands = llava::AllCommands();
  auto usage = [&](std::ostream& os) {
    os << "usage: llava-mnist <command> [--flags]\n\ncommands:\n";
    for (const llava::Command& c : commands) {
      os << "  " << c.name << std::string(18 - std::min<size_t>(17, strlen(c.name)), ' ')
         << c.help << "\n";
    }
    os << "\n`llava-mnist <command> --help` lists the flags.\n";
  };
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  for (const llava::Command& c : commands) {
    if (c.name == std::string(argv[1])) return llava::RunCommand(c, argc - 1, argv + 1);
  }
  std::cerr << "llava-mnist: unknown command '" << argv[1] << "'\n\n";
  usage(std::cerr);
  return 2;
}
