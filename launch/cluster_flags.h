// Flags of the distributed commands (coordinator, worker, launch, the gRPC client) and
// the job specs built from flags: a JSON file mapped onto the TrainSpec/EvalSpec message,
// then every train/eval flag whose value differs from its default laid over it.
#pragma once

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "protos/llava.pb.h"
#include "worker/coordinator_client.h"

ABSL_DECLARE_FLAG(std::string, coordinator);
ABSL_DECLARE_FLAG(int64_t, rpc_timeout_ms);
ABSL_DECLARE_FLAG(int64_t, max_message_bytes);
ABSL_DECLARE_FLAG(std::string, job_json);
ABSL_DECLARE_FLAG(int64_t, world_size);
ABSL_DECLARE_FLAG(int64_t, max_restarts);
ABSL_DECLARE_FLAG(int64_t, eval_workers);
ABSL_DECLARE_FLAG(std::string, job_model);
ABSL_DECLARE_FLAG(std::string, health_listen);
ABSL_DECLARE_FLAG(std::string, metrics_listen);

namespace llava {

// TLS and token settings (the same flags for every command; servers and clients read
// them differently, see RpcSecurityOptions).
RpcSecurityOptions SecurityOptionsFromFlags();
// The coordinator address, deadlines and security, the files read.
absl::StatusOr<ClientOptions> ClientOptionsFromFlags();

// `base` (a JSON object of TrainSpec fields, may be empty), then --job_json's file, then
// the flags given. Errors name the file and the field.
absl::StatusOr<v1::TrainSpec> TrainSpecFromFlags(const std::string& base_json);
// --checkpoint (a checkpoint id or training job id) and the eval flags.
absl::StatusOr<v1::EvalSpec> EvalSpecFromFlags(const std::string& base_json);

// One line: "train-000001 RUNNING step 12/63 loss 0.4213 12.3 samples/s", with
// "restarts N attempt A from step S" once an attempt resumed from a checkpoint.
std::string StatusLine(const v1::JobStatus& status);
// "attempt 2: 1 rank from step 10 (shrunk to 1 of 2 ranks ...); ended: ...".
std::string AttemptLine(const v1::Attempt& attempt);

}  // namespace llava
