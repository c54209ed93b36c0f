#include "launch/commands.h"

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "launch/cmd_bench.h"
#include "launch/cmd_cluster.h"
#include "launch/cmd_demo_lm.h"
#include "launch/cmd_export.h"
#include "launch/cmd_info.h"
#include "launch/cmd_vlm.h"
#include "launch/control_commands.h"

namespace llava {
namespace {

std::string DescribeException(const std::exception& e) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e)) {
    return absl::StrCat("libtorch: ", torch_error->what_without_backtrace());
  }
  return absl::StrCat("unexpected error: ", e.what());
}

std::vector<Command> MnistCommands() {
  std::vector<Command> commands = {
      {"info",
       "load a model (checkpoint dir or synthetic:NAME) and print its shape",
       {"launch/cmd_info.cc"},
       &RunInfo},
      {"tokenize",
       "encode text with a Llama 3 tokenizer.json (or decode --ids)",
       {"launch/cmd_info.cc"},
       &RunTokenize},
      {"generate",
       "greedy generation from a text prompt with a Llama checkpoint",
       {"launch/cmd_info.cc"},
       &RunGenerate},
      {"make-demo-lm",
       "train the small text-only demo LM (offline stand-in for Llama 3.1)",
       {"launch/cmd_demo_lm.cc"},
       &RunMakeDemoLm},
      {"train",
       "train a projector through the frozen LLM in one process",
       {"launch/cmd_vlm.cc", "launch/vlm_setup.cc", "launch/job_flags.cc"},
       &RunTrain},
      {"eval",
       "evaluate a projector checkpoint on MNIST test digits",
       {"launch/cmd_vlm.cc", "launch/vlm_setup.cc", "launch/job_flags.cc"},
       &RunEval},
      {"export",
       "write a projector checkpoint under transformers' or LLaVA's names "
       "(export --checkpoint C --format hf|llava --out DIR)",
       {"launch/cmd_export.cc", "launch/job_flags.cc"},
       &RunExport},
      {"ask",
       "ask the model about one digit image (PNG or IDX index)",
       {"launch/cmd_vlm.cc", "launch/vlm_setup.cc", "launch/job_flags.cc"},
       &RunAsk},
      {"launch",
       "start a coordinator and N local workers, train then evaluate (the main job)",
       {"launch/cmd_launch.cc", "launch/cluster_flags.cc", "launch/cmd_vlm.cc",
        "launch/vlm_setup.cc", "launch/job_flags.cc"},
       &RunLaunch},
      {"worker",
       "serve as a worker: load the model once, run training ranks and eval shards",
       {"launch/cmd_servers.cc", "launch/cluster_flags.cc"},
       &RunWorker},
  };
  for (const Command& c : ControlCommands()) commands.push_back(c);
  commands.push_back({"bench",
                      "time the product's training step and evaluation (medians; table + JSON)",
                      {"launch/cmd_bench.cc", "launch/vlm_setup.cc"},
                      &RunBench});
  return commands;
}

}  // namespace

const CommandSet& AllCommands() {
  static const CommandSet set = {"llava-mnist", MnistCommands(), &DescribeException};
  return set;
}

}  // namespace llava
