// The coordinator's checkpoint store: <dir>/<job_id>/step-<N>.safetensors, each written
// atomically (temp file, fsync, rename) only after its size and SHA-256 check out, with a
// JSON sidecar holding its CheckpointInfo; survives coordinator restarts (rescanned on
// Open); serves projector-only copies for eval.
//
// Retention and recovery: each job keeps its newest `keep_last` checkpoints and the
// `keep_best` with the highest eval accuracy among those an eval scored (SetRetention;
// the options' keep_last and no best otherwise), within `max_job_bytes` together; the
// rest are deleted after a newer one is stored, an eval is recorded or a pin is dropped.
// A pinned checkpoint (one a running attempt resumes from, an unfinished eval job reads or
// a job starts from) is never deleted; Pin fails for one already gone, so a reference
// taken under the store's lock cannot race a deletion. A checkpoint whose
// bytes no longer match its recorded SHA-256 when read (resume, eval, download) is
// quarantined: renamed to step-<N>.safetensors.quarantined with a step-<N>.quarantined
// note saying why, dropped from the index, and listed by Quarantined() so that the job's
// status shows it; FindVerified() then yields the newest checkpoint that does verify.
//
// Thread-safe: one mutex guards the index, the notes, the derived copies, retention and
// pins; file I/O happens outside it, except the renames of a quarantine. A second mutex,
// taken before it, makes a sidecar's write and its index entry one step (Put, RecordEval).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "common/projector_config.h"
#include "protos/llava.pb.h"

namespace llava {

// A job's retention policy (TrainSpec.keep_last, keep_best).
struct Retention {
  int64_t keep_last = 3;  // >= 1
  int64_t keep_best = 0;  // >= 0
};

struct CheckpointStoreOptions {
  int64_t keep_last = 3;                      // per job, >= 1
  int64_t max_job_bytes = int64_t{16} << 30;  // the kept checkpoints of one job together

  absl::Status Validate() const;
};

class CheckpointStore {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(const std::string& dir,
                                                               CheckpointStoreOptions options = {});

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

  // Retention: the job's policy from now on (until the store restarts; the scheduler sets
  // it again for the jobs it loads).
  void SetRetention(const std::string& job_id, Retention retention);
  int64_t default_keep_last() const { return options_.keep_last; }
  // Records that eval job `eval_job_id` scored checkpoint `checkpoint_id` whose file had
  // `sha256` (in its sidecar, so that it survives restarts), then prunes its job.
  // NOT_FOUND for a checkpoint gone; FAILED_PRECONDITION when the step was rewritten since.
  absl::Status RecordEval(const std::string& checkpoint_id, const std::string& sha256,
                          const std::string& eval_job_id, double accuracy);
  // Keeps `checkpoint_id` from pruning on behalf of `holder` ("<job id>" or
  // "<job id>/<purpose>"), which holds one pin: a new one replaces (and releases) its last.
  // NOT_FOUND when the checkpoint is not (or no longer) in the store.
  absl::Status Pin(const std::string& checkpoint_id, const std::string& holder);
  // Drops the pins of `holder` and of "<holder>/..." then prunes what they kept.
  void Unpin(const std::string& holder);
  // The projector config of a stored checkpoint, read and verified (the projector-only
  // copy, cached).
  absl::StatusOr<ProjectorConfig> ReadProjectorConfig(const v1::CheckpointInfo& info);

 private:
  CheckpointStore(std::string dir, CheckpointStoreOptions options)
      : dir_(std::move(dir)), options_(options) {}
  std::string PathOf(const std::string& id) const;
  void Quarantine(const v1::CheckpointInfo& info, const std::string& why);
  // Deletes the job's checkpoints that its retention does not keep and nothing pins.
  void Prune(const std::string& job_id);
  void PruneJobOf(const std::string& checkpoint_id);
  Retention RetentionOf(const std::string& job_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteSidecar(const v1::CheckpointInfo& info) const;

  const std::string dir_;
  const CheckpointStoreOptions options_;
  // Taken before mu_ while a sidecar is written for an index entry (Put, RecordEval).
  absl::Mutex sidecar_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, v1::CheckpointInfo> by_id_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> quarantined_ ABSL_GUARDED_BY(mu_);  // by job
  // Projector-only files by checkpoint id (with the full file's SHA-256, so that a
  // replaced checkpoint is derived again), newest last.
  std::deque<std::pair<std::string, std::shared_ptr<const Derived>>> derived_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Retention> retention_ ABSL_GUARDED_BY(mu_);  // by job
  std::map<std::string, std::string> pins_ ABSL_GUARDED_BY(mu_);     // holder -> checkpoint id
};

// Of a job's checkpoints, the ids `retention` keeps: the newest keep_last steps and the
// keep_best highest eval accuracies (ties: the newer step) among those scored.
std::set<std::string> RetainedIds(const std::vector<v1::CheckpointInfo>& checkpoints,
                                  Retention retention);

}  // namespace llava
