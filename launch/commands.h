// The subcommands of the llava-mnist binary: the model commands (tensor code, libtorch),
// `worker`, `launch`, `bench`, and the control plane's (launch/control_commands.h), run
// through launch/command_runner.h with libtorch's exceptions reported without their
// backtrace.
#pragma once

#include "launch/command_runner.h"

namespace llava {

const CommandSet& AllCommands();

}  // namespace llava
