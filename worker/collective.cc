#include "worker/collective.h"

#include "absl/strings/str_cat.h"

namespace llava {

absl::StatusOr<std::unique_ptr<Collective>> CreateGlooCollective(const CollectiveOptions& options,
                                                                 RendezvousClient* store);
absl::StatusOr<std::unique_ptr<Collective>> CreateNcclCollective(const CollectiveOptions& options,
                                                                 RendezvousClient* store);

bool HaveEngine(const std::string& engine) {
#ifdef LLAVA_HAVE_GLOO
  if (engine == "gloo") return true;
#endif
#ifdef LLAVA_HAVE_NCCL
  if (engine == "nccl") return true;
#endif
  return false;
}

absl::StatusOr<std::unique_ptr<Collective>> CreateCollective(const CollectiveOptions& options,
                                                             RendezvousClient* store) {
  if (options.world_size <= 0 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("collective: rank ", options.rank, " of world ", options.world_size));
  }
  if (options.timeout.count() <= 0)
    return absl::InvalidArgumentError("collective: timeout must be > 0");
  if (!HaveEngine(options.engine)) {
    return absl::FailedPreconditionError(
        absl::StrCat("collective engine '", options.engine,
                     "' is not in this build (gloo: CPU with libgloo-dev; "
                     "nccl: CUDA libtorch with NCCL)"));
  }
#ifdef LLAVA_HAVE_GLOO
  if (options.engine == "gloo") return CreateGlooCollective(options, store);
#endif
#ifdef LLAVA_HAVE_NCCL
  if (options.engine == "nccl") return CreateNcclCollective(options, store);
#endif
  return absl::InternalError("unreachable");
}

}  // namespace llava
