// The coordinator's checkpoint store: <dir>/<job_id>/step-<N>.safetensors, each written
// atomically (temp file, fsync, rename) only after its size and SHA-256 check out, with a
// JSON sidecar holding its CheckpointInfo; survives coordinator restarts (rescanned on
// Open); serves projector-only copies for eval. Thread-safe: one mutex guards the index
// and the derived copies; file I/O happens outside it.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protos/llava.pb.h"

namespace llava {

class CheckpointStore {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(const std::string& dir);

  // Verifies `bytes` against `sha256_hex`, then stores them as `job_id`'s checkpoint at
  // `step` (replacing one at the same step: a restarted attempt redoes steps).
  absl::StatusOr<v1::CheckpointInfo> Put(const std::string& job_id, int64_t step, bool final,
                                         const std::string& bytes, const std::string& sha256_hex);
  // A checkpoint id, or a job id for that job's latest (highest step) checkpoint.
  absl::StatusOr<v1::CheckpointInfo> Find(const std::string& id_or_job) const;
  // The file's bytes, re-verified against the recorded SHA-256 (DATA_LOSS if the disk
  // copy was damaged).
  absl::StatusOr<std::string> Read(const v1::CheckpointInfo& info) const;
  // The checkpoint without its optimizer state, and that file's SHA-256. Derived from a
  // verified Read once, then served from memory (the last few, bounded).
  struct Derived {
    std::string bytes;
    std::string sha256;
  };
  absl::StatusOr<std::shared_ptr<const Derived>> ReadProjectorOnly(const v1::CheckpointInfo& info) const;
  // Oldest first; `job_id` empty: every job's.
  std::vector<v1::CheckpointInfo> List(const std::string& job_id) const;

  static std::string MakeId(const std::string& job_id, int64_t step);

 private:
  explicit CheckpointStore(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(const std::string& id) const;

  const std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, v1::CheckpointInfo> by_id_;  // guarded by mu_
  // Projector-only files by checkpoint id (with the full file's SHA-256, so that a
  // replaced checkpoint is derived again), newest last; guarded by mu_.
  mutable std::deque<std::pair<std::string, std::shared_ptr<const Derived>>> derived_;
};

}  // namespace llava
