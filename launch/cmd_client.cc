// The gRPC client commands: submit train|eval, status, watch, list, cancel,
// fetch-checkpoint, workers. Each talks to --coordinator with --rpc_timeout_ms deadlines.
// With --json they print protobuf's JSON of the messages (for scripts), one per line.
#include <google/protobuf/util/json_util.h>

#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/eval_report.h"
#include "common/net/health_server.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "launch/cluster_flags.h"
#include "launch/cmd_cluster.h"
#include "worker/coordinator_client.h"

ABSL_FLAG(bool, wait, false,
          "submit: watch the job until it ends (exit status 1 unless it succeeded)");
ABSL_FLAG(bool, wait_for_workers, false,
          "submit: queue the job even if fewer matching workers are registered than it needs");
ABSL_FLAG(int64_t, watch_timeout_ms, 24 * 3600 * 1000,
          "watch/submit --wait: give up after this long");
ABSL_FLAG(std::string, out, "",
          "fetch-checkpoint: write the file here (default <id>.safetensors); export: the output "
          "directory");
ABSL_FLAG(bool, projector_only, false,
          "fetch-checkpoint: without the optimizer state (for eval and inference)");
ABSL_FLAG(bool, history, false, "status: print every step's metrics");
ABSL_FLAG(std::string, report_out, "", "status: write an eval job's report (JSON) here");
ABSL_FLAG(std::string, target, "", "health: the port to probe (default: --coordinator)");
ABSL_FLAG(std::string, service, "", "health: \"\" (liveness) or \"readiness\"");
ABSL_FLAG(bool, plaintext, false, "health: probe without TLS even when --tls_* flags are set");
ABSL_FLAG(
    bool, json, false,
    "status, watch, list, cancel, workers, submit: print each JobStatus/WorkerStatus as protobuf "
    "JSON (lowerCamelCase names, every field), one object per line");
ABSL_FLAG(bool, quiet, false,
          "submit: print only the job id, also with --wait (the exit status tells the end)");

namespace llava {
namespace {

absl::StatusOr<std::string> OnlyArg(const std::vector<char*>& args, const char* what) {
  if (args.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("give exactly one ", what, " (got ", args.size() - 1, " arguments)"));
  }
  return std::string(args[1]);
}

enum class Output { kText, kJson, kQuiet };

absl::StatusOr<Output> OutputFromFlags() {
  const bool json = absl::GetFlag(FLAGS_json), quiet = absl::GetFlag(FLAGS_quiet);
  if (json && quiet) return absl::InvalidArgumentError("give --json or --quiet, not both");
  return json ? Output::kJson : quiet ? Output::kQuiet : Output::kText;
}

// Every field, zeros included, so that a script need not know proto3's defaults; int64
// fields are strings and enums their names, as protobuf's JSON mapping has them.
absl::StatusOr<std::string> JsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  auto s = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!s.ok()) {
    return absl::InternalError(absl::StrCat("cannot print a ", message.GetDescriptor()->name(),
                                            " as JSON: ", s.message().as_string()));
  }
  return json;
}

absl::Status PrintJson(const google::protobuf::Message& message) {
  LM_ASSIGN_OR_RETURN(std::string json, JsonLine(message));
  std::cout << json << "\n" << std::flush;
  return absl::OkStatus();
}

void PrintFinal(const v1::JobStatus& s) {
  std::cout << StatusLine(s) << "\n";
  if (s.kind() == v1::JOB_KIND_EVAL && !s.eval_report_json().empty()) {
    auto report = EvalReport::FromJson(s.eval_report_json(), s.job_id());
    if (report.ok()) std::cout << report->ToTable() << "\n";
  }
}

// Text: a line per change and the final report; JSON: every status that differs from the
// one before, the last one terminal; quiet: nothing.
absl::Status Watch(JobClient& client, const std::string& job_id, Output output) {
  std::string last;
  absl::Status printed;
  LM_ASSIGN_OR_RETURN(
      v1::JobStatus final_status,
      client.WatchJob(job_id, std::chrono::milliseconds(absl::GetFlag(FLAGS_watch_timeout_ms)),
                      [&](const v1::JobStatus& s) {
                        if (output == Output::kQuiet) return;
                        absl::StatusOr<std::string> line =
                            output == Output::kJson ? JsonLine(s) : StatusLine(s);
                        if (!line.ok()) {
                          printed.Update(line.status());
                          return;
                        }
                        if (*line != last) std::cout << *line << "\n" << std::flush;
                        last = *line;
                      }));
  LM_RETURN_IF_ERROR(printed);
  if (output == Output::kText) PrintFinal(final_status);
  if (final_status.state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::AbortedError(absl::StrCat("job ", job_id, " ended ",
                                           v1::JobState_Name(final_status.state()), ": ",
                                           final_status.reason()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSubmit(const std::vector<char*>& args) {
  LM_ASSIGN_OR_RETURN(std::string kind, OnlyArg(args, "job kind (train or eval)"));
  v1::SubmitJobRequest request;
  if (kind == "train") {
    LM_ASSIGN_OR_RETURN(*request.mutable_train(), TrainSpecFromFlags(""));
  } else if (kind == "eval") {
    LM_ASSIGN_OR_RETURN(*request.mutable_eval(), EvalSpecFromFlags(""));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("submit train|eval, not '", kind, "'"));
  }
  request.set_wait_for_workers(absl::GetFlag(FLAGS_wait_for_workers));
  LM_ASSIGN_OR_RETURN(Output output, OutputFromFlags());
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  CoordinatorClient client(options);
  LM_ASSIGN_OR_RETURN(v1::JobStatus status, client.Submit(request));
  if (output == Output::kJson) {
    LM_RETURN_IF_ERROR(PrintJson(status));
  } else {
    std::cout << status.job_id() << "\n" << std::flush;
  }
  if (!absl::GetFlag(FLAGS_wait)) return absl::OkStatus();
  return Watch(client, status.job_id(), output);
}

absl::Status RunStatus(const std::vector<char*>& args) {
  LM_ASSIGN_OR_RETURN(std::string job_id, OnlyArg(args, "job id"));
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  CoordinatorClient client(options);
  LM_ASSIGN_OR_RETURN(v1::JobStatus s, client.GetJob(job_id, absl::GetFlag(FLAGS_history)));
  const std::string report_out = absl::GetFlag(FLAGS_report_out);
  if (!report_out.empty()) LM_RETURN_IF_ERROR(WriteFileAtomic(report_out, s.eval_report_json()));
  if (absl::GetFlag(FLAGS_json)) return PrintJson(s);  // the history is in it
  PrintFinal(s);
  for (const v1::Attempt& a : s.attempts()) std::cout << AttemptLine(a) << "\n";
  for (const v1::StepMetrics& m : s.history()) {
    std::cout << absl::StrFormat(
        "step %d epoch %d loss %.5f lr %.3e samples/s %.1f step_ms %.1f allreduce_ms %.2f",
        m.step(), m.epoch(), m.loss(), m.lr(), m.samples_per_s(), m.step_ms(), m.allreduce_ms());
    if (m.loss_scale() > 0) {
      std::cout << absl::StrFormat(" loss_scale %g skipped %d", m.loss_scale(), m.skipped_steps());
    }
    std::cout << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunWatch(const std::vector<char*>& args) {
  LM_ASSIGN_OR_RETURN(std::string job_id, OnlyArg(args, "job id"));
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  CoordinatorClient client(options);
  return Watch(client, job_id, absl::GetFlag(FLAGS_json) ? Output::kJson : Output::kText);
}

absl::Status RunList(const std::vector<char*>&) {
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  CoordinatorClient client(options);
  LM_ASSIGN_OR_RETURN(v1::ListJobsResponse jobs, client.ListJobs());
  for (const v1::JobStatus& s : jobs.jobs()) {
    if (absl::GetFlag(FLAGS_json)) {
      LM_RETURN_IF_ERROR(PrintJson(s));
    } else {
      std::cout << StatusLine(s) << "\n";
    }
  }
  return absl::OkStatus();
}

absl::Status RunCancel(const std::vector<char*>& args) {
  LM_ASSIGN_OR_RETURN(std::string job_id, OnlyArg(args, "job id"));
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  CoordinatorClient client(options);
  LM_ASSIGN_OR_RETURN(v1::JobStatus s, client.CancelJob(job_id));
  if (absl::GetFlag(FLAGS_json)) return PrintJson(s);
  std::cout << StatusLine(s) << "\n";
  return absl::OkStatus();
}

absl::Status RunDelete(const std::vector<char*>& args) {
  LM_ASSIGN_OR_RETURN(std::string job_id, OnlyArg(args, "job id"));
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  CoordinatorClient client(options);
  LM_RETURN_IF_ERROR(client.DeleteJob(job_id));
  std::cout << job_id << " deleted\n";
  return absl::OkStatus();
}

absl::Status RunFetchCheckpoint(const std::vector<char*>& args) {
  LM_ASSIGN_OR_RETURN(std::string id, OnlyArg(args, "checkpoint id or training job id"));
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  CoordinatorClient client(options);
  LM_ASSIGN_OR_RETURN(CoordinatorClient::Download download,
                      client.DownloadCheckpoint(id, absl::GetFlag(FLAGS_projector_only)));
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    out = download.header.checkpoint_id() + ".safetensors";
    for (char& c : out) {
      if (c == '/') c = '_';
    }
  }
  // The checksum was verified on arrival; the file is replaced atomically.
  LM_RETURN_IF_ERROR(WriteFileAtomic(out, download.bytes));
  std::cout << download.header.checkpoint_id() << " -> " << out << " (" << download.bytes.size()
            << " bytes, sha256 " << download.header.sha256() << ")\n";
  return absl::OkStatus();
}

absl::Status RunWorkers(const std::vector<char*>&) {
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  CoordinatorClient client(options);
  LM_ASSIGN_OR_RETURN(v1::ListWorkersResponse workers, client.ListWorkers());
  for (const v1::WorkerStatus& w : workers.workers()) {
    if (absl::GetFlag(FLAGS_json)) {
      LM_RETURN_IF_ERROR(PrintJson(w));
      continue;
    }
    std::cout << absl::StrFormat(
        "%s %s %s %s %s%s\n", w.info().worker_id(), w.alive() ? "alive" : "lost", w.info().device(),
        w.info().collective(), w.info().model(),
        w.running().job_id().empty()
            ? std::string(" idle")
            : absl::StrCat(" running ", w.running().job_id(), " rank ", w.running().rank()));
  }
  return absl::OkStatus();
}

absl::Status RunHealth(const std::vector<char*>&) {
  LM_ASSIGN_OR_RETURN(ClientOptions options, ClientOptionsFromFlags());
  HealthProbe probe;
  probe.target =
      absl::GetFlag(FLAGS_target).empty() ? options.address : absl::GetFlag(FLAGS_target);
  probe.service = absl::GetFlag(FLAGS_service);
  probe.timeout = options.rpc_timeout;
  LM_RETURN_IF_ERROR(
      ProbeHealth(probe, absl::GetFlag(FLAGS_plaintext) ? nullptr : options.security.get()));
  std::cout << probe.target << " " << (probe.service.empty() ? "(liveness)" : probe.service)
            << " SERVING\n";
  return absl::OkStatus();
}

}  // namespace llava
