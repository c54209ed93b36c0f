// The coordinator's checkpoint store: <dir>/<job_id>/step-<N>.safetensors, each written
// atomically (temp file, fsync, rename) only after its size and SHA-256 check out, with a
// JSON sidecar holding its CheckpointInfo; survives coordinator restarts (rescanned on
// Open); serves projector-only copies for eval.
//
// Retention and recovery: each job keeps its newest `keep_last` checkpoints (older ones
// are deleted after a newer one is stored) within `max_job_bytes`. A checkpoint whose
// bytes no longer match its recorded SHA-256 when read (resume, eval, download) is
// quarantined: renamed to step-<N>.safetensors.quarantined with a step-<N>.quarantined
// note saying why, dropped from the index, and listed by Quarantined() so that the job's
// status shows it; FindVerified() then yields the newest checkpoint that does verify.
//
// Thread-safe: one mutex guards the index, the notes and the derived copies; file I/O
// happens outside it, except the renames of a quarantine.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "protos/llava.pb.h"

namespace llava {

struct CheckpointStoreOptions {
  int64_t keep_last = 3;                    // per job, >= 1
  int64_t max_job_bytes = int64_t{16} << 30;  // the kept checkpoints of one job together

  absl::Status Validate() const;
};

class CheckpointStore {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(
      const std::string& dir, CheckpointStoreOptions options = {});

  // Verifies `bytes` against `sha256_hex`, then stores them as `job_id`'s checkpoint at
  // `step` (replacing one at the same step: a restarted attempt redoes steps), then prunes
  // the job's checkpoints beyond keep_last. DATA_LOSS for a digest mismatch (the sender's
  // fault); RESOURCE_EXHAUSTED past max_job_bytes or with the disk full; INTERNAL for
  // other I/O errors. Nothing is half-written either way.
  absl::StatusOr<v1::CheckpointInfo> Put(const std::string& job_id, int64_t step, bool final,
                                         const std::string& bytes, const std::string& sha256_hex);
  // A checkpoint id, or a job id for that job's latest (highest step) checkpoint.
  absl::StatusOr<v1::CheckpointInfo> Find(const std::string& id_or_job) const;
  // The job's newest checkpoint that verifies (quarantining those that do not on the
  // way). NOT_FOUND when none is left.
  absl::StatusOr<v1::CheckpointInfo> FindVerified(const std::string& job_id);
  // `info` again if its file verifies; DATA_LOSS (and quarantined) if not.
  absl::StatusOr<v1::CheckpointInfo> Verify(const v1::CheckpointInfo& info);
  // The file's bytes, re-verified against the recorded SHA-256 (DATA_LOSS, and the file
  // quarantined, if the disk copy was damaged).
  absl::StatusOr<std::string> Read(const v1::CheckpointInfo& info);
  // The checkpoint without its optimizer state, and that file's SHA-256. Derived from a
  // verified Read once, then served from memory (the last few, bounded).
  struct Derived {
    std::string bytes;
    std::string sha256;
  };
  absl::StatusOr<std::shared_ptr<const Derived>> ReadProjectorOnly(const v1::CheckpointInfo& info);
  // Oldest first; `job_id` empty: every job's.
  std::vector<v1::CheckpointInfo> List(const std::string& job_id) const;
  // The job's quarantined checkpoints, oldest first: "<id>: <why>".
  std::vector<std::string> Quarantined(const std::string& job_id) const;

  static std::string MakeId(const std::string& job_id, int64_t step);

 private:
  CheckpointStore(std::string dir, CheckpointStoreOptions options)
      : dir_(std::move(dir)), options_(options) {}
  std::string PathOf(const std::string& id) const;
  void Quarantine(const v1::CheckpointInfo& info, const std::string& why);
  // Deletes the job's checkpoints beyond keep_last (oldest steps first).
  void Prune(const std::string& job_id);

  const std::string dir_;
  const CheckpointStoreOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, v1::CheckpointInfo> by_id_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> quarantined_ ABSL_GUARDED_BY(mu_);  // by job
  // Projector-only files by checkpoint id (with the full file's SHA-256, so that a
  // replaced checkpoint is derived again), newest last.
  std::deque<std::pair<std::string, std::shared_ptr<const Derived>>> derived_ ABSL_GUARDED_BY(mu_);
};

}  // namespace llava
