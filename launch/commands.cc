#include "launch/commands.h"

#include <exception>
#include <iostream>

#include <c10/util/Exception.h>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "launch/cmd_bench.h"
#include "launch/cmd_cluster.h"
#include "launch/cmd_demo_lm.h"
#include "launch/cmd_export.h"
#include "launch/cmd_info.h"
#include "launch/cmd_vlm.h"

namespace llava {

const std::vector<Command>& AllCommands() {
  static const std::vector<Command> commands = {
      {"info", "load a model (checkpoint dir or synthetic:NAME) and print its shape",
       {"launch/cmd_info.cc"}, &RunInfo},
      {"tokenize", "encode text with a Llama 3 tokenizer.json (or decode --ids)",
       {"launch/cmd_info.cc"}, &RunTokenize},
      {"generate", "greedy generation from a text prompt with a Llama checkpoint",
       {"launch/cmd_info.cc"}, &RunGenerate},
      {"make-demo-lm", "train the small text-only demo LM (offline stand-in for Llama 3.1)",
       {"launch/cmd_demo_lm.cc"}, &RunMakeDemoLm},
      {"train", "train a projector through the frozen LLM in one process",
       {"launch/cmd_vlm.cc", "launch/vlm_setup.cc"}, &RunTrain},
      {"eval", "evaluate a projector checkpoint on MNIST test digits",
       {"launch/cmd_vlm.cc", "launch/vlm_setup.cc"}, &RunEval},
      {"export", "write a projector checkpoint under transformers' or LLaVA's names "
                 "(export --checkpoint C --format hf|llava --out DIR)",
       {"launch/cmd_export.cc"}, &RunExport},
      {"ask", "ask the model about one digit image (PNG or IDX index)",
       {"launch/cmd_vlm.cc", "launch/vlm_setup.cc"}, &RunAsk},
      {"launch", "start a coordinator and N local workers, train then evaluate (the main job)",
       {"launch/cmd_launch.cc", "launch/cluster_flags.cc", "launch/cmd_vlm.cc", "launch/vlm_setup.cc"},
       &RunLaunch},
      {"coordinator", "serve the coordinator (jobs, workers, rendezvous, checkpoints) over gRPC",
       {"launch/cmd_servers.cc", "launch/cluster_flags.cc"}, &RunCoordinator},
      {"worker", "serve as a worker: load the model once, run training ranks and eval shards",
       {"launch/cmd_servers.cc", "launch/cluster_flags.cc"}, &RunWorker},
      {"submit", "submit a job: submit train|eval [flags or --job_json FILE] [--wait] [--json|--quiet]",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc", "launch/cmd_vlm.cc", "launch/vlm_setup.cc"},
       &RunSubmit},
      {"status", "print a job's status (status JOB_ID [--history] [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"}, &RunStatus},
      {"watch", "follow a job until it ends (watch JOB_ID [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"}, &RunWatch},
      {"list", "list the coordinator's jobs (list [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"}, &RunList},
      {"cancel", "cancel a job (cancel JOB_ID [--json])", {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunCancel},
      {"delete", "forget a finished job's record (delete JOB_ID); its checkpoints stay",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"}, &RunDelete},
      {"fetch-checkpoint", "download a checkpoint (id or training job id), checksum verified",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"}, &RunFetchCheckpoint},
      {"workers", "list the coordinator's workers (workers [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"}, &RunWorkers},
      {"health", "probe a grpc.health.v1 port (health [--target HOST:PORT] [--service readiness])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"}, &RunHealth},
      {"bench", "time the product's training step and evaluation (medians; table + JSON)",
       {"launch/cmd_bench.cc", "launch/vlm_setup.cc"}, &RunBench},
  };
  return commands;
}

namespace {
std::vector<std::string>& MutableCommandLine() {
  static std::vector<std::string> line;
  return line;
}
}  // namespace

const std::vector<std::string>& CommandLine() { return MutableCommandLine(); }

int RunCommand(const Command& command, int argc, char** argv) {
  static const Command* current = nullptr;
  current = &command;
  MutableCommandLine().assign(argv, argv + argc);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    if (absl::StrContains(file, "launch/flags_common")) return true;
    for (const std::string& f : current->flag_files) {
      if (absl::StrContains(file, f)) return true;
    }
    return false;
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.normalize_filename = [](absl::string_view f) { return std::string(f); };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(
      absl::StrCat("llava-mnist ", command.name, ": ", command.help));
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  absl::Status status;
  try {
    status = command.run(args);
  } catch (const c10::Error& e) {
    status = absl::InternalError(absl::StrCat("libtorch: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("unexpected error: ", e.what()));
  }
  if (!status.ok()) {
    std::cerr << "llava-mnist " << command.name << ": " << status.message() << "\n";
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace llava
