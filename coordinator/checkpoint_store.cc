#include "coordinator/checkpoint_store.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/train_checkpoint.h"

namespace llava {
namespace {

bool ValidJobId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

}  // namespace

std::string CheckpointStore::MakeId(const std::string& job_id, int64_t step) {
  return absl::StrFormat("%s/step-%06d", job_id, step);
}

std::string CheckpointStore::PathOf(const std::string& id) const {
  return dir_ + "/" + id + ".safetensors";
}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(const std::string& dir) {
  LM_RETURN_IF_ERROR(MakeDirs(dir));
  std::unique_ptr<CheckpointStore> store(new CheckpointStore(dir));
  for (const std::string& job : ListDir(dir)) {
    if (!IsDirectory(dir + "/" + job)) continue;
    for (const std::string& name : ListDir(dir + "/" + job)) {
      if (name.size() < 5 || name.substr(name.size() - 5) != ".json") continue;
      const std::string path = dir + "/" + job + "/" + name;
      LM_ASSIGN_OR_RETURN(std::string json, ReadFile(path));
      v1::CheckpointInfo info;
      if (!google::protobuf::util::JsonStringToMessage(json, &info).ok() ||
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
  if (!ValidJobId(job_id)) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: bad job id '", job_id, "'"));
  }
  if (step < 0) return absl::InvalidArgumentError("checkpoint: step must be >= 0");
  const std::string actual = Sha256Hex(bytes);
  if (actual != sha256_hex) {
    return absl::DataLossError(absl::StrCat("checkpoint of ", job_id, " step ", step,
                                            ": SHA-256 ", actual, " does not match the sent ",
                                            sha256_hex, "; nothing stored"));
  }
  v1::CheckpointInfo info;
  info.set_checkpoint_id(MakeId(job_id, step));
  info.set_job_id(job_id);
  info.set_step(step);
  info.set_final(final);
  info.set_size_bytes(static_cast<int64_t>(bytes.size()));
  info.set_sha256(actual);
  info.set_created_unix_ms(absl::ToUnixMillis(absl::Now()));
  LM_RETURN_IF_ERROR(MakeDirs(dir_ + "/" + job_id));
  // The file first, then its sidecar: a crash between them leaves a file that Open
  // ignores rather than a record without its file.
  LM_RETURN_IF_ERROR(WriteFileAtomic(PathOf(info.checkpoint_id()), bytes));
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(info, &json, options).ok()) {
    return absl::InternalError("checkpoint: cannot encode its record");
  }
  LM_RETURN_IF_ERROR(WriteFileAtomic(dir_ + "/" + info.checkpoint_id() + ".json", json));
  std::lock_guard<std::mutex> lock(mu_);
  by_id_[info.checkpoint_id()] = info;
  return info;
}

absl::StatusOr<v1::CheckpointInfo> CheckpointStore::Find(const std::string& id_or_job) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(id_or_job);
  if (it != by_id_.end()) return it->second;
  const v1::CheckpointInfo* latest = nullptr;
  for (const auto& [id, info] : by_id_) {
    if (info.job_id() == id_or_job && (latest == nullptr || info.step() > latest->step())) {
      latest = &info;
    }
  }
  if (latest == nullptr) {
    return absl::NotFoundError(absl::StrCat("no checkpoint or job with checkpoints named '",
                                            id_or_job, "'"));
  }
  return *latest;
}

absl::StatusOr<std::string> CheckpointStore::Read(const v1::CheckpointInfo& info) const {
  const std::string path = PathOf(info.checkpoint_id());
  LM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  if (Sha256Hex(bytes) != info.sha256()) {
    return absl::DataLossError(absl::StrCat(path, ": SHA-256 differs from the one recorded"));
  }
  return bytes;
}

absl::StatusOr<std::shared_ptr<const CheckpointStore::Derived>> CheckpointStore::ReadProjectorOnly(
    const v1::CheckpointInfo& info) const {
  constexpr size_t kKept = 4;  // eval jobs read the newest checkpoints; a few suffice
  const std::string key = info.checkpoint_id() + "@" + info.sha256();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, d] : derived_) {
      if (k == key) return d;
    }
  }
  LM_ASSIGN_OR_RETURN(std::string bytes, Read(info));
  auto derived = std::make_shared<Derived>();
  LM_ASSIGN_OR_RETURN(derived->bytes, ProjectorOnlyCheckpoint(std::move(bytes), PathOf(info.checkpoint_id())));
  derived->sha256 = Sha256Hex(derived->bytes);
  std::lock_guard<std::mutex> lock(mu_);
  derived_.emplace_back(key, derived);
  if (derived_.size() > kKept) derived_.pop_front();
  return std::shared_ptr<const Derived>(derived);
}

std::vector<v1::CheckpointInfo> CheckpointStore::List(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
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
