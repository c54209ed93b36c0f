#include "worker/projector_share.h"

#include <chrono>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "common/elapsed.h"
#include "common/status_macros.h"

namespace llava {
namespace {

using Clock = std::chrono::steady_clock;

// No projector-only file comes near this; a larger announced length is a broken peer.
constexpr int64_t kMaxProjectorBytes = int64_t{4} << 30;

absl::Status InRank(int64_t rank, const char* what, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("eval rank ", rank, ": ", what, ": ", s.message()));
}

// Whether another rank lacks the projector, from the flags every rank publishes. A rank
// whose flag never comes fails this within the timeout; when the coordinator ends the
// attempt, at once (the store refuses the keys of an attempt that no longer runs).
absl::StatusOr<bool> AnotherRankLacksIt(const CollectiveOptions& o, RendezvousClient* store) {
  for (int64_t r = 0; r < o.world_size; ++r) {
    if (r == o.rank) continue;
    absl::StatusOr<std::string> flag = store->Get(ProjectorNeedKey(o.prefix, r), o.timeout);
    if (!flag.ok())
      return InRank(o.rank, absl::StrCat("reading rank ", r, "'s projector flag").c_str(),
                    flag.status());
    if (*flag == "1") return true;
  }
  return false;
}

// Bytes move where the engine wants them: the CPU for Gloo, the rank's GPU for NCCL.
at::TensorOptions Staging(const CollectiveOptions& o) {
  const at::Device device = o.engine == "nccl"
                                ? at::Device(at::kCUDA, static_cast<at::DeviceIndex>(o.cuda_device))
                                : at::Device(at::kCPU);
  return at::TensorOptions().dtype(at::kByte).device(device);
}

at::Tensor Staged(const std::string& bytes, const at::TensorOptions& staging) {
  at::Tensor cpu =
      at::empty({static_cast<int64_t>(bytes.size())}, at::TensorOptions().dtype(at::kByte));
  if (!bytes.empty()) std::memcpy(cpu.data_ptr(), bytes.data(), bytes.size());
  return cpu.to(staging.device());
}

std::string Unstaged(const at::Tensor& t) {
  const at::Tensor cpu = t.to(at::kCPU).contiguous();
  return std::string(static_cast<const char*>(cpu.data_ptr()), cpu.nbytes());
}

// Rank 0 sends what its fetch gave (`root_outcome`: the bytes, or its error); every rank
// returns it. First a length (n >= 0: n bytes follow; -1 - n: an error message of n
// bytes follows), then the payload.
absl::StatusOr<std::string> BroadcastOutcome(Collective& group, const CollectiveOptions& o,
                                             absl::StatusOr<std::string>* root_outcome) {
  const at::TensorOptions staging = Staging(o);
  std::string error;
  const std::string* payload = nullptr;
  int64_t length = 0;
  if (o.rank == 0) {
    if (root_outcome->ok()) {
      payload = &**root_outcome;
      length = static_cast<int64_t>(payload->size());
    } else {
      error = root_outcome->status().ToString();
      payload = &error;
      length = -1 - static_cast<int64_t>(error.size());
    }
  }
  at::Tensor header =
      at::full({1}, length, at::TensorOptions().dtype(at::kLong)).to(staging.device());
  if (absl::Status s = group.Broadcast(header, 0); !s.ok())
    return InRank(o.rank, "broadcasting the projector's length", s);
  length = header.to(at::kCPU).item<int64_t>();
  const int64_t n = length >= 0 ? length : -1 - length;
  if (n > kMaxProjectorBytes) {
    return absl::DataLossError(
        absl::StrCat("eval rank ", o.rank, ": rank 0 announced ", n, " projector bytes"));
  }
  at::Tensor body = o.rank == 0 ? Staged(*payload, staging) : at::empty({n}, staging);
  if (absl::Status s = group.Broadcast(body, 0); !s.ok())
    return InRank(o.rank, "broadcasting the projector", s);
  if (o.rank == 0) return std::move(*root_outcome);
  if (length < 0) {
    return absl::UnavailableError(absl::StrCat(
        "eval rank ", o.rank, ": rank 0 could not fetch the projector: ", Unstaged(body)));
  }
  return Unstaged(body);
}

}  // namespace

AttachedCollective::AttachedCollective(std::unique_ptr<Collective> group,
                                       std::function<void(Collective*)> on_collective)
    : group_(std::move(group)), on_collective_(std::move(on_collective)) {
  if (group_ && on_collective_) on_collective_(group_.get());
}

AttachedCollective& AttachedCollective::operator=(AttachedCollective&& other) {
  if (this != &other) {
    Reset();
    group_ = std::move(other.group_);
    on_collective_ = std::move(other.on_collective_);
  }
  return *this;
}

AttachedCollective::~AttachedCollective() { Reset(); }

void AttachedCollective::Reset() {
  if (group_ && on_collective_) on_collective_(nullptr);
  group_.reset();
}

std::string ProjectorNeedKey(const std::string& prefix, int64_t rank) {
  return absl::StrCat(prefix, "eval/lacks-projector/", rank);
}

absl::StatusOr<ProjectorShare> ShareProjector(
    const ProjectorShareOptions& options, RendezvousClient* store,
    const std::function<absl::StatusOr<std::string>()>& fetch,
    const std::function<void(Collective*)>& on_collective) {
  const CollectiveOptions& o = options.collective;
  ProjectorShare out;
  if (absl::Status s = store->Set(ProjectorNeedKey(o.prefix, o.rank), options.have ? "0" : "1");
      !s.ok()) {
    return InRank(o.rank, "publishing its projector flag", s);
  }
  // A rank that lacks the projector knows that the group is needed; one that has it asks.
  if (options.have) {
    LM_ASSIGN_OR_RETURN(bool needed, AnotherRankLacksIt(o, store));
    if (!needed) return out;
  }
  // Rank 0 fetches while the group forms: the job waits for the longer of the two, not both.
  std::future<absl::StatusOr<std::string>> fetching;
  double fetch_ms = 0;
  if (o.rank == 0) {
    fetching = std::async(std::launch::async, [&fetch, &fetch_ms] {
      const auto start = Clock::now();
      absl::StatusOr<std::string> bytes = fetch();
      fetch_ms = MsSince(start);
      return bytes;
    });
  }
  const auto group_start = Clock::now();
  absl::StatusOr<std::unique_ptr<Collective>> made = CreateCollective(o, store);
  if (!made.ok()) {
    if (fetching.valid()) fetching.wait();  // its thread uses `fetch` and `fetch_ms`
    return InRank(o.rank, "meeting the eval group", made.status());
  }
  out.group = AttachedCollective(std::move(*made), on_collective);
  out.group_ms = MsSince(group_start);
  absl::StatusOr<std::string> root_outcome = absl::UnknownError("not rank 0");
  if (o.rank == 0) {
    root_outcome = fetching.get();
    out.fetched = true;
    out.fetch_ms = fetch_ms;
  }
  const auto broadcast_start = Clock::now();
  LM_ASSIGN_OR_RETURN(std::string bytes, BroadcastOutcome(*out.group.get(), o, &root_outcome));
  out.broadcast_ms = MsSince(broadcast_start);
  if (!options.have) out.bytes = std::move(bytes);
  return out;
}

}  // namespace llava
