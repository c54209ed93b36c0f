#include "coordinator/checkpoint_store.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/train_checkpoint_format.h"
#include "common/validation.h"

namespace llava {
namespace {

constexpr char kQuarantineSuffix[] = ".quarantined";

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

absl::Status CheckpointStoreOptions::Validate() const {
  if (keep_last < 1 || keep_last > JobLimits::kMaxKeepCheckpoints) {
    return absl::InvalidArgumentError(
        absl::StrCat("--keep_checkpoints must be in [1, ", JobLimits::kMaxKeepCheckpoints, "]"));
  }
  if (max_job_bytes < 1)
    return absl::InvalidArgumentError("--max_job_checkpoint_bytes must be >= 1");
  return absl::OkStatus();
}

std::string CheckpointStore::MakeId(const std::string& job_id, int64_t step) {
  return absl::StrFormat("%s/step-%06d", job_id, step);
}

std::string CheckpointStore::PathOf(const std::string& id) const {
  return dir_ + "/" + id + ".safetensors";
}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(
    const std::string& dir, CheckpointStoreOptions options) {
  LM_RETURN_IF_ERROR(options.Validate());
  LM_RETURN_IF_ERROR(MakeDirs(dir));
  std::unique_ptr<CheckpointStore> store(new CheckpointStore(dir, options));
  absl::MutexLock lock(&store->mu_);  // no other thread has it yet; the analysis wants it
  for (const std::string& job : ListDir(dir)) {
    if (!IsDirectory(dir + "/" + job)) continue;
    for (const std::string& name : ListDir(dir + "/" + job)) {
      if (EndsWith(name, kQuarantineSuffix) &&
          !EndsWith(name, std::string(".safetensors") + kQuarantineSuffix)) {
        auto note = ReadFile(dir + "/" + job + "/" + name);
        if (note.ok())
          store->quarantined_[job].push_back(
              std::string(absl::StripTrailingAsciiWhitespace(*note)));
        continue;
      }
      if (name.size() < 5 || name.substr(name.size() - 5) != ".json") continue;
      const std::string path = dir + "/" + job + "/" + name;
      LM_ASSIGN_OR_RETURN(std::string json, ReadFile(path));
      v1::CheckpointInfo info;
      if (!google::protobuf::util::JsonStringToMessage(json, &info).ok() || info.job_id() != job ||
          info.checkpoint_id() != MakeId(job, info.step()) ||
          !FileExists(store->PathOf(info.checkpoint_id()))) {
        // A sidecar without its file (or a damaged one) is a crash leftover: skip it.
        LM_LOG(WARNING) << "checkpoint store: ignoring " << path;
        continue;
      }
      store->by_id_[info.checkpoint_id()] = info;
    }
  }
  LM_LOG(INFO) << "checkpoint store " << dir << ": " << store->by_id_.size() << " checkpoints";
  return store;
}

absl::StatusOr<v1::CheckpointInfo> CheckpointStore::Put(const std::string& job_id, int64_t step,
                                                        bool final, const std::string& bytes,
                                                        const std::string& sha256_hex) {
  LM_RETURN_IF_ERROR(CheckId("checkpoint: job id", job_id));
  if (step < 0 || step > 999999999) {
    return absl::InvalidArgumentError("checkpoint: step must be in [0, 999999999]");
  }
  const std::string actual = Sha256Hex(bytes);
  if (actual != sha256_hex) {
    return absl::DataLossError(absl::StrCat("checkpoint of ", job_id, " step ", step, ": SHA-256 ",
                                            actual, " does not match the sent ", sha256_hex,
                                            "; nothing stored"));
  }
  v1::CheckpointInfo info;
  info.set_checkpoint_id(MakeId(job_id, step));
  info.set_job_id(job_id);
  info.set_step(step);
  info.set_final(final);
  info.set_size_bytes(static_cast<int64_t>(bytes.size()));
  info.set_sha256(actual);
  info.set_created_unix_ms(absl::ToUnixMillis(absl::Now()));
  {
    // What the job keeps once this one is stored: together within the quota (pinned
    // older ones are transient and not counted).
    std::vector<v1::CheckpointInfo> after = {info};
    absl::MutexLock lock(&mu_);
    for (const auto& [id, other] : by_id_) {
      if (other.job_id() == job_id && other.step() != step) after.push_back(other);
    }
    const std::set<std::string> kept = RetainedIds(after, RetentionOf(job_id));
    int64_t total = 0;
    for (const v1::CheckpointInfo& c : after) {
      if (kept.count(c.checkpoint_id()) > 0) total += c.size_bytes();
    }
    if (total > options_.max_job_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "checkpoint of ", job_id, " step ", step, ": the job's kept checkpoints would take ",
          total, " bytes, over its quota of ", options_.max_job_bytes, "; nothing stored"));
    }
  }
  LM_RETURN_IF_ERROR(MakeDirs(dir_ + "/" + job_id));
  // The file first, then its sidecar: a crash between them leaves a file that Open
  // ignores rather than a record without its file.
  LM_RETURN_IF_ERROR(WriteFileAtomic(PathOf(info.checkpoint_id()), bytes));
  {
    // Sidecar and index change together with respect to RecordEval's rewrite.
    absl::MutexLock sidecar_lock(&sidecar_mu_);
    if (absl::Status s = WriteSidecar(info); !s.ok()) {
      // No sidecar, no checkpoint: the file alone would be ignored at Open; remove it now.
      std::remove(PathOf(info.checkpoint_id()).c_str());
      return s;
    }
    absl::MutexLock lock(&mu_);
    by_id_[info.checkpoint_id()] = info;
  }
  Prune(job_id);
  return info;
}

absl::Status CheckpointStore::WriteSidecar(const v1::CheckpointInfo& info) const {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(info, &json, options).ok()) {
    return absl::InternalError("checkpoint: cannot encode its record");
  }
  return WriteFileAtomic(dir_ + "/" + info.checkpoint_id() + ".json", json);
}

std::set<std::string> RetainedIds(const std::vector<v1::CheckpointInfo>& checkpoints,
                                  Retention retention) {
  std::vector<const v1::CheckpointInfo*> by_step, scored;
  for (const v1::CheckpointInfo& c : checkpoints) {
    by_step.push_back(&c);
    if (!c.eval_job_id().empty()) scored.push_back(&c);
  }
  std::sort(by_step.begin(), by_step.end(),
            [](const auto* a, const auto* b) { return a->step() > b->step(); });
  std::sort(scored.begin(), scored.end(), [](const auto* a, const auto* b) {
    return std::make_pair(a->eval_accuracy(), a->step()) >
           std::make_pair(b->eval_accuracy(), b->step());
  });
  std::set<std::string> kept;
  for (size_t i = 0; i < by_step.size() && static_cast<int64_t>(i) < retention.keep_last; ++i) {
    kept.insert(by_step[i]->checkpoint_id());
  }
  for (size_t i = 0; i < scored.size() && static_cast<int64_t>(i) < retention.keep_best; ++i) {
    kept.insert(scored[i]->checkpoint_id());
  }
  return kept;
}

Retention CheckpointStore::RetentionOf(const std::string& job_id) const {
  auto it = retention_.find(job_id);
  return it != retention_.end() ? it->second : Retention{options_.keep_last, 0};
}

void CheckpointStore::SetRetention(const std::string& job_id, Retention retention) {
  absl::MutexLock lock(&mu_);
  retention_[job_id] = retention;
}

void CheckpointStore::Prune(const std::string& job_id) {
  std::vector<std::string> doomed;
  Retention retention;
  {
    // Out of the index under the lock (a Pin after this finds nothing to pin), then the
    // files outside it.
    absl::MutexLock lock(&mu_);
    retention = RetentionOf(job_id);
    std::vector<v1::CheckpointInfo> mine;
    for (const auto& [id, info] : by_id_) {
      if (info.job_id() == job_id) mine.push_back(info);
    }
    std::set<std::string> kept = RetainedIds(mine, retention);
    for (const auto& [holder, id] : pins_) kept.insert(id);
    for (const v1::CheckpointInfo& info : mine) {
      const std::string& id = info.checkpoint_id();
      if (kept.count(id) > 0) continue;
      doomed.push_back(id);
      by_id_.erase(id);
    }
  }
  for (const std::string& id : doomed) {
    // The sidecar first: a crash between the two leaves a file that Open ignores.
    std::remove((dir_ + "/" + id + ".json").c_str());
    std::remove(PathOf(id).c_str());
    LM_LOG(INFO) << "checkpoint " << id << " pruned (keeping the newest " << retention.keep_last
                 << " and the best " << retention.keep_best << " by eval accuracy)";
  }
}

absl::Status CheckpointStore::RecordEval(const std::string& checkpoint_id,
                                         const std::string& sha256, const std::string& eval_job_id,
                                         double accuracy) {
  v1::CheckpointInfo info;
  {
    absl::MutexLock sidecar_lock(&sidecar_mu_);
    {
      absl::MutexLock lock(&mu_);
      auto it = by_id_.find(checkpoint_id);
      if (it == by_id_.end()) {
        return absl::NotFoundError(
            absl::StrCat("checkpoint '", checkpoint_id, "' is not in the store"));
      }
      if (it->second.sha256() != sha256) {
        return absl::FailedPreconditionError(
            absl::StrCat("checkpoint '", checkpoint_id,
                         "' was rewritten since the eval read it (a restarted attempt)"));
      }
      it->second.set_eval_job_id(eval_job_id);
      it->second.set_eval_accuracy(accuracy);
      info = it->second;
    }
    LM_RETURN_IF_ERROR(WriteSidecar(info));
  }
  Prune(info.job_id());
  return absl::OkStatus();
}

absl::Status CheckpointStore::Pin(const std::string& checkpoint_id, const std::string& holder) {
  std::string released;  // the checkpoint this holder pinned before, if another
  {
    absl::MutexLock lock(&mu_);
    if (by_id_.count(checkpoint_id) == 0) {
      return absl::NotFoundError(
          absl::StrCat("checkpoint '", checkpoint_id,
                       "' is not in the store (pruned, quarantined or never stored)"));
    }
    auto it = pins_.find(holder);
    if (it != pins_.end() && it->second != checkpoint_id) released = it->second;
    pins_[holder] = checkpoint_id;
  }
  if (!released.empty()) PruneJobOf(released);
  return absl::OkStatus();
}

void CheckpointStore::Unpin(const std::string& holder) {
  std::vector<std::string> released;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = pins_.lower_bound(holder); it != pins_.end();) {
      const std::string& h = it->first;
      if (h != holder && h.compare(0, holder.size() + 1, holder + "/") != 0) break;
      released.push_back(it->second);
      it = pins_.erase(it);
    }
  }
  for (const std::string& id : released) PruneJobOf(id);
}

void CheckpointStore::PruneJobOf(const std::string& checkpoint_id) {
  std::string job;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_id_.find(checkpoint_id);
    if (it == by_id_.end()) return;
    job = it->second.job_id();
  }
  Prune(job);
}

absl::StatusOr<ProjectorConfig> CheckpointStore::ReadProjectorConfig(
    const v1::CheckpointInfo& info) {
  LM_ASSIGN_OR_RETURN(std::shared_ptr<const Derived> derived, ReadProjectorOnly(info));
  // The header alone: the coordinator decodes no tensor.
  const std::string& bytes = derived->bytes;
  LM_ASSIGN_OR_RETURN(SafetensorsHeader header,
                      ParseSafetensorsHeader(reinterpret_cast<const uint8_t*>(bytes.data()),
                                             bytes.size(), info.checkpoint_id()));
  LM_ASSIGN_OR_RETURN(TrainCheckpointLayout layout,
                      CheckTrainCheckpoint(header, info.checkpoint_id()));
  return layout.projector_config;
}

void CheckpointStore::Quarantine(const v1::CheckpointInfo& info, const std::string& why) {
  const std::string id = info.checkpoint_id();
  const std::string note = absl::StrCat(id, ": ", why);
  absl::MutexLock lock(&mu_);
  if (by_id_.erase(id) == 0) return;  // another reader got there first
  std::remove((dir_ + "/" + id + ".json").c_str());
  std::rename(PathOf(id).c_str(), (PathOf(id) + kQuarantineSuffix).c_str());
  absl::Status s = WriteFileAtomic(dir_ + "/" + id + kQuarantineSuffix, note + "\n");
  quarantined_[info.job_id()].push_back(note);
  LM_LOG(ERROR) << "checkpoint " << id << " quarantined: " << why
                << (s.ok() ? std::string()
                           : absl::StrCat(" (note not written: ", s.message(), ")"));
}

std::vector<std::string> CheckpointStore::Quarantined(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = quarantined_.find(job_id);
  return it == quarantined_.end() ? std::vector<std::string>() : it->second;
}

absl::StatusOr<v1::CheckpointInfo> CheckpointStore::Verify(const v1::CheckpointInfo& info) {
  LM_RETURN_IF_ERROR(Read(info).status());
  return info;
}

absl::StatusOr<v1::CheckpointInfo> CheckpointStore::FindVerified(const std::string& job_id) {
  while (true) {
    LM_ASSIGN_OR_RETURN(v1::CheckpointInfo newest, Find(job_id));
    auto verified = Verify(newest);
    if (verified.ok() || !absl::IsDataLoss(verified.status())) return verified;
  }
}

absl::StatusOr<v1::CheckpointInfo> CheckpointStore::Find(const std::string& id_or_job) const {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id_or_job);
  if (it != by_id_.end()) return it->second;
  const v1::CheckpointInfo* latest = nullptr;
  for (const auto& [id, info] : by_id_) {
    if (info.job_id() == id_or_job && (latest == nullptr || info.step() > latest->step())) {
      latest = &info;
    }
  }
  if (latest == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no checkpoint or job with checkpoints named '", id_or_job, "'"));
  }
  return *latest;
}

absl::StatusOr<std::string> CheckpointStore::Read(const v1::CheckpointInfo& info) {
  const std::string path = PathOf(info.checkpoint_id());
  auto bytes = ReadFile(path);
  std::string why;
  if (!bytes.ok()) {
    if (!absl::IsNotFound(bytes.status())) return bytes.status();  // I/O: maybe transient
    why = "its file is missing";
  } else if (static_cast<int64_t>(bytes->size()) != info.size_bytes() ||
             Sha256Hex(*bytes) != info.sha256()) {
    why = "its bytes differ from the SHA-256 recorded when it was stored";
  } else {
    return bytes;
  }
  Quarantine(info, why);
  return absl::DataLossError(
      absl::StrCat("checkpoint ", info.checkpoint_id(), " (", path, "): ", why, "; quarantined"));
}

absl::StatusOr<std::shared_ptr<const CheckpointStore::Derived>> CheckpointStore::ReadProjectorOnly(
    const v1::CheckpointInfo& info) {
  constexpr size_t kKept = 4;  // eval jobs read the newest checkpoints; a few suffice
  const std::string key = info.checkpoint_id() + "@" + info.sha256();
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [k, d] : derived_) {
      if (k == key) return d;
    }
  }
  LM_ASSIGN_OR_RETURN(std::string bytes, Read(info));
  auto derived = std::make_shared<Derived>();
  LM_ASSIGN_OR_RETURN(derived->bytes,
                      ProjectorOnlyCheckpoint(std::move(bytes), PathOf(info.checkpoint_id())));
  derived->sha256 = Sha256Hex(derived->bytes);
  absl::MutexLock lock(&mu_);
  derived_.emplace_back(key, derived);
  if (derived_.size() > kKept) derived_.pop_front();
  return std::shared_ptr<const Derived>(derived);
}

std::vector<v1::CheckpointInfo> CheckpointStore::List(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::CheckpointInfo> out;
  for (const auto& [id, info] : by_id_) {
    if (job_id.empty() || info.job_id() == job_id) out.push_back(info);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.created_unix_ms(), a.checkpoint_id()) <
           std::make_pair(b.created_unix_ms(), b.checkpoint_id());
  });
  return out;
}

}  // namespace llava
