// llava-ctl: the control plane without libtorch (the coordinator and the gRPC client), for
// the coordinator's image and for scripts that call the client often. Dispatch only.
#include "common/log.h"
#include "launch/control_commands.h"

int main(int argc, char** argv) {
  llava::log::InitLogging(argv[0]);
  return llava::RunCommandLine({"llava-ctl", llava::ControlCommands()}, argc, argv);
}
