// The control plane's commands: `coordinator` and the gRPC client (`submit`, `status`,
// `watch`, `list`, `cancel`, `delete`, `fetch-checkpoint`, `workers`, `health`). No
// libtorch: they are all of build/bin/llava-ctl, and llava-mnist runs the same ones.
#pragma once

#include <vector>

#include "launch/command_runner.h"

namespace llava {

const std::vector<Command>& ControlCommands();

}  // namespace llava
