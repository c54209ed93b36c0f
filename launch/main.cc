// llava-mnist: one binary, one subcommand per job. Dispatch only; each subcommand lives
// in its own file and registers itself in commands.cc.
#include <string>

#include "common/file_util.h"
#include "common/log.h"
#include "common/malloc_tuning.h"
#include "launch/commands.h"

int main(int argc, char** argv) {
  // Before any thread starts (common/malloc_tuning.h); LLAVA_KEEP_FREED_MEMORY=0 leaves
  // the C library's defaults, to measure what the setting is worth.
  std::string why_not;
  if (llava::GetEnvOr("LLAVA_KEEP_FREED_MEMORY", "1") != "0") {
    llava::KeepFreedMemoryForReuse(&why_not);
  }
  llava::log::InitLogging(argv[0]);
  return llava::RunCommandLine(llava::AllCommands(), argc, argv);
}
