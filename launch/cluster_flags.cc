#include "launch/cluster_flags.h"

#include <google/protobuf/util/json_util.h>

#include "absl/flags/flag.h"
#include "absl/flags/internal/private_handle_accessor.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "launch/job_flags.h"

ABSL_FLAG(std::string, coordinator, llava::GetEnvOr("LLAVA_COORDINATOR", "127.0.0.1:50051"),
          "address of the coordinator's gRPC server (host:port)");
ABSL_FLAG(int64_t, rpc_timeout_ms, 10000, "deadline of each gRPC call (long polls add their wait)");
ABSL_FLAG(int64_t, max_message_bytes, 8 << 20, "largest gRPC message sent or received");
ABSL_FLAG(std::string, job_json, "",
          "submit: a JSON file of TrainSpec/EvalSpec fields (flags given win)");
ABSL_FLAG(int64_t, world_size, 1, "submit train: ranks (one worker each)");
ABSL_FLAG(int64_t, min_world_size, 0,
          "submit train: elastic training, the fewest ranks the job goes on with after losing "
          "a worker (default: world_size, not elastic)");
ABSL_FLAG(int64_t, max_restarts, 3,
          "submit/launch: restarts from the last checkpoint after a failure");
ABSL_FLAG(int64_t, eval_workers, 0, "submit eval: workers to split over (0: every idle one)");
ABSL_FLAG(std::string, job_model, "", "submit: only run on workers that loaded this model spec");
ABSL_FLAG(std::string, init_from, "",
          "submit train: start the projector from this checkpoint id, or a training job id for its "
          "newest verified checkpoint (optimizer and schedule fresh)");
ABSL_FLAG(int64_t, keep_last, 3,
          "submit train: keep the job's newest N checkpoints (default: the coordinator's "
          "--keep_checkpoints)");
ABSL_FLAG(int64_t, keep_best, 0,
          "submit train: also keep the job's N checkpoints with the best eval accuracy");
ABSL_FLAG(std::string, health_listen, llava::GetEnvOr("LLAVA_HEALTH_LISTEN", ""),
          "coordinator, worker: plaintext grpc.health.v1 port for probes (empty: none)");
ABSL_FLAG(std::string, metrics_listen, llava::GetEnvOr("LLAVA_METRICS_LISTEN", ""),
          "coordinator, worker: serve Prometheus metrics at http://ADDRESS/metrics (empty: none)");
ABSL_FLAG(std::string, tls_cert, llava::GetEnvOr("LLAVA_TLS_CERT", ""),
          "PEM certificate: the coordinator's server certificate, or a client's certificate");
ABSL_FLAG(std::string, tls_key, llava::GetEnvOr("LLAVA_TLS_KEY", ""),
          "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_ca, llava::GetEnvOr("LLAVA_TLS_CA", ""),
          "PEM CA bundle: clients verify the coordinator with it (and use TLS); a coordinator "
          "with --tls_client_auth verifies client certificates with it");
ABSL_FLAG(bool, tls_client_auth, llava::GetEnvOr("LLAVA_TLS_CLIENT_AUTH", "") == "1",
          "coordinator: require client certificates signed by --tls_ca");
ABSL_FLAG(
    std::string, tls_server_name, llava::GetEnvOr("LLAVA_TLS_SERVER_NAME", ""),
    "clients: the name to verify in the coordinator's certificate (e.g. through a port-forward)");
ABSL_FLAG(std::string, auth_token_file, llava::GetEnvOr("LLAVA_AUTH_TOKEN_FILE", ""),
          "file holding the bearer token: the coordinator requires it on every RPC but health, "
          "clients and workers send it (needs TLS)");
ABSL_FLAG(std::string, auth_tokens_file, llava::GetEnvOr("LLAVA_AUTH_TOKENS_FILE", ""),
          "coordinator: the credentials by role, one per line '<role> <name> <token>' (role: "
          "client, worker or admin); takes the place of --auth_token_file");

namespace llava {
namespace {

// A flag counts as given when it was on the command line (even at its default value:
// `--projector linear` must override a job file's mlp2x_gelu), or was set otherwise to a
// value other than its default.
bool Given(const char* name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr) return false;
  return absl::flags_internal::PrivateHandleAccessor::IsSpecifiedOnCommandLine(*flag) ||
         flag->CurrentValue() != flag->DefaultValue();
}

template <typename Message>
absl::Status MergeJson(const std::string& json, const std::string& source, Message* message) {
  if (json.empty()) return absl::OkStatus();
  Message parsed;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;  // a typo must not pass silently
  auto s = google::protobuf::util::JsonStringToMessage(json, &parsed, options);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": not a valid ", Message::descriptor()->name(), ": ", s.message().as_string()));
  }
  message->MergeFrom(parsed);
  return absl::OkStatus();
}

template <typename Message>
absl::Status MergeJobFile(Message* message) {
  const std::string path = absl::GetFlag(FLAGS_job_json);
  if (path.empty()) return absl::OkStatus();
  LM_ASSIGN_OR_RETURN(std::string json, ReadFile(path));
  return MergeJson(json, path, message);
}

void SetRepeated(google::protobuf::RepeatedPtrField<std::string>* field, const std::string& value) {
  field->Clear();
  for (const std::string& s : SplitPhrasings(value)) *field->Add() = s;
}

}  // namespace

RpcSecurityOptions SecurityOptionsFromFlags() {
  RpcSecurityOptions o;
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  o.tls_client_auth = absl::GetFlag(FLAGS_tls_client_auth);
  o.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  o.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  o.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  return o;
}

absl::StatusOr<ClientOptions> ClientOptionsFromFlags() {
  ClientOptions o;
  LM_ASSIGN_OR_RETURN(o.security, RpcSecurity::LoadClient(SecurityOptionsFromFlags()));
  o.address = absl::GetFlag(FLAGS_coordinator);
  o.rpc_timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_rpc_timeout_ms));
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.checkpoint_chunk_bytes = std::min<int64_t>(1 << 20, o.max_message_bytes / 2);
  return o;
}

absl::StatusOr<v1::TrainSpec> TrainSpecFromFlags(const std::string& base_json) {
  v1::TrainSpec spec;
  LM_RETURN_IF_ERROR(MergeJson(base_json, "the built-in job", &spec));
  LM_RETURN_IF_ERROR(MergeJobFile(&spec));
  if (Given("job_model")) spec.set_model(absl::GetFlag(FLAGS_job_model));
  if (Given("projector")) {
    spec.set_projector(absl::GetFlag(FLAGS_projector));
    spec.clear_projector_hidden();  // a base recipe's width belongs to its projector type
  }
  if (Given("projector_hidden")) spec.set_projector_hidden(absl::GetFlag(FLAGS_projector_hidden));
  if (Given("image_tokens")) spec.set_image_tokens(absl::GetFlag(FLAGS_image_tokens));
  if (Given("optimizer")) spec.set_optimizer(absl::GetFlag(FLAGS_optimizer));
  if (Given("lr")) spec.set_lr(absl::GetFlag(FLAGS_lr));
  if (Given("weight_decay")) spec.set_weight_decay(absl::GetFlag(FLAGS_weight_decay));
  if (Given("schedule")) spec.set_schedule(absl::GetFlag(FLAGS_schedule));
  if (Given("warmup_ratio")) spec.set_warmup_ratio(absl::GetFlag(FLAGS_warmup_ratio));
  if (Given("batch_size")) spec.set_batch_size(absl::GetFlag(FLAGS_batch_size));
  if (Given("grad_accum")) spec.set_grad_accum(absl::GetFlag(FLAGS_grad_accum));
  if (Given("epochs")) spec.set_epochs(absl::GetFlag(FLAGS_epochs));
  if (Given("max_steps")) spec.set_max_steps(absl::GetFlag(FLAGS_max_steps));
  if (Given("train_digits")) spec.set_train_digits(absl::GetFlag(FLAGS_train_digits));
  if (Given("seed")) spec.set_seed(absl::GetFlag(FLAGS_seed));
  if (Given("questions")) SetRepeated(spec.mutable_questions(), absl::GetFlag(FLAGS_questions));
  if (Given("answer_templates")) {
    SetRepeated(spec.mutable_answer_templates(), absl::GetFlag(FLAGS_answer_templates));
  }
  if (Given("prompt_style")) spec.set_prompt_style(absl::GetFlag(FLAGS_prompt_style));
  if (Given("world_size")) spec.set_world_size(absl::GetFlag(FLAGS_world_size));
  if (Given("min_world_size")) spec.set_min_world_size(absl::GetFlag(FLAGS_min_world_size));
  if (Given("checkpoint_every"))
    spec.set_checkpoint_every_steps(absl::GetFlag(FLAGS_checkpoint_every));
  if (Given("max_restarts")) spec.set_max_restarts(absl::GetFlag(FLAGS_max_restarts));
  if (Given("init_from")) spec.set_init_from(absl::GetFlag(FLAGS_init_from));
  if (Given("keep_last")) spec.set_keep_last(absl::GetFlag(FLAGS_keep_last));
  if (Given("keep_best")) spec.set_keep_best(absl::GetFlag(FLAGS_keep_best));
  if (Given("augment_shift")) spec.set_augment_shift(absl::GetFlag(FLAGS_augment_shift));
  if (Given("augment_rotate")) spec.set_augment_rotate(absl::GetFlag(FLAGS_augment_rotate));
  if (Given("augment_scale")) spec.set_augment_scale(absl::GetFlag(FLAGS_augment_scale));
  return spec;
}

absl::StatusOr<v1::EvalSpec> EvalSpecFromFlags(const std::string& base_json) {
  v1::EvalSpec spec;
  LM_RETURN_IF_ERROR(MergeJson(base_json, "the built-in job", &spec));
  LM_RETURN_IF_ERROR(MergeJobFile(&spec));
  if (Given("checkpoint")) spec.set_checkpoint(absl::GetFlag(FLAGS_checkpoint));
  if (Given("job_model")) spec.set_model(absl::GetFlag(FLAGS_job_model));
  if (Given("questions")) SetRepeated(spec.mutable_questions(), absl::GetFlag(FLAGS_questions));
  if (Given("eval_digits")) spec.set_eval_digits(absl::GetFlag(FLAGS_eval_digits));
  if (Given("eval_batch_size")) spec.set_batch_size(absl::GetFlag(FLAGS_eval_batch_size));
  if (Given("max_new_tokens")) spec.set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
  if (Given("prompt_style")) spec.set_prompt_style(absl::GetFlag(FLAGS_prompt_style));
  if (Given("eval_workers")) spec.set_workers(absl::GetFlag(FLAGS_eval_workers));
  if (Given("max_restarts")) spec.set_max_restarts(absl::GetFlag(FLAGS_max_restarts));
  return spec;
}

std::string StatusLine(const v1::JobStatus& s) {
  std::string line = absl::StrCat(s.job_id(), " ", v1::JobState_Name(s.state()).substr(10));
  if (s.kind() == v1::JOB_KIND_TRAIN) {
    absl::StrAppend(&line, absl::StrFormat(" step %d/%d", s.step(), s.total_steps()));
    if (s.has_last_step()) {
      absl::StrAppend(&line,
                      absl::StrFormat(" loss %.4f lr %.2e %.1f samples/s", s.last_step().loss(),
                                      s.last_step().lr(), s.last_step().samples_per_s()));
      if (s.last_step().skipped_steps() > 0) {
        absl::StrAppend(&line, " skipped ", s.last_step().skipped_steps(), " (float16 overflow)");
      }
    }
    if (!s.latest_checkpoint_id().empty())
      absl::StrAppend(&line, " ckpt ", s.latest_checkpoint_id());
    if (!s.train().init_from().empty())
      absl::StrAppend(&line, " init_from ", s.train().init_from());
  } else {
    absl::StrAppend(&line,
                    absl::StrFormat(" answers %d/%d", s.eval_images_done(), s.eval_images_total()));
  }
  if (s.worker_ids_size() > 0) {
    absl::StrAppend(&line, " workers");
    for (const auto& w : s.worker_ids()) absl::StrAppend(&line, " ", w);
    if (s.kind() == v1::JOB_KIND_TRAIN && s.worker_ids_size() < s.train().world_size()) {
      absl::StrAppend(&line, " (", s.worker_ids_size(), " of ", s.train().world_size(), " ranks)");
    }
  }
  if (s.restarts() > 0) absl::StrAppend(&line, " restarts ", s.restarts());
  if (s.resumed_from_step() > 0) {
    absl::StrAppend(&line, " attempt ", s.attempt(), " from step ", s.resumed_from_step());
  }
  if (!s.submitter().empty() && s.submitter() != "local")
    absl::StrAppend(&line, " by ", s.submitter());
  if (!s.reason().empty()) absl::StrAppend(&line, " (", s.reason(), ")");
  for (const std::string& q : s.quarantined_checkpoints())
    absl::StrAppend(&line, " [quarantined ", q, "]");
  return line;
}

std::string AttemptLine(const v1::Attempt& a) {
  std::string line = absl::StrCat("attempt ", a.attempt(), ": ", a.world_size(), " rank",
                                  a.world_size() == 1 ? "" : "s", " from step ", a.from_step(),
                                  " (", a.why(), ")");
  if (!a.ended().empty()) absl::StrAppend(&line, "; ended: ", a.ended());
  return line;
}

}  // namespace llava
