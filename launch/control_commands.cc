#include "launch/control_commands.h"

#include "launch/cmd_cluster.h"

namespace llava {

const std::vector<Command>& ControlCommands() {
  static const std::vector<Command> commands = {
      {"coordinator",
       "serve the coordinator (jobs, workers, rendezvous, checkpoints) over gRPC",
       {"launch/cmd_coordinator.cc", "launch/cluster_flags.cc"},
       &RunCoordinator},
      {"submit",
       "submit a job: submit train|eval [flags or --job_json FILE] [--wait] [--json|--quiet]",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc", "launch/job_flags.cc"},
       &RunSubmit},
      {"status",
       "print a job's status (status JOB_ID [--history] [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunStatus},
      {"watch",
       "follow a job until it ends (watch JOB_ID [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunWatch},
      {"list",
       "list the coordinator's jobs (list [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunList},
      {"cancel",
       "cancel a job (cancel JOB_ID [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunCancel},
      {"delete",
       "forget a finished job's record (delete JOB_ID); its checkpoints stay",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunDelete},
      {"fetch-checkpoint",
       "download a checkpoint (id or training job id), checksum verified",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunFetchCheckpoint},
      {"workers",
       "list the coordinator's workers (workers [--json])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunWorkers},
      {"health",
       "probe a grpc.health.v1 port (health [--target HOST:PORT] [--service readiness])",
       {"launch/cmd_client.cc", "launch/cluster_flags.cc"},
       &RunHealth},
  };
  return commands;
}

}  // namespace llava
