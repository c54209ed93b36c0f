// llava-mnist: one binary, one subcommand per job. Dispatch only; each subcommand lives
// in its own file and registers itself in commands.cc.
#include "common/log.h"
#include "launch/commands.h"

int main(int argc, char** argv) {
  llava::log::InitLogging(argv[0]);
  return llava::RunCommandLine(llava::AllCommands(), argc, argv);
}
