// Gloo over TCP for CPU workers: the full mesh is met through the coordinator's store,
// and every transport wait is bounded by the group's timeout. Abort() makes a pending
// operation fail at once: Gloo has no call for that, so it shuts down the group's own
// sockets (those the mesh opened), which its transport then reports as peers gone.
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <set>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "worker/collective.h"

namespace llava {
namespace {

// Gloo's store interface over ours; Gloo expects exceptions on failure.
class GlooStore : public gloo::rendezvous::Store {
 public:
  GlooStore(RendezvousClient* client, std::string prefix, std::chrono::milliseconds timeout)
      : client_(client), prefix_(std::move(prefix)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    absl::Status s = client_->Set(prefix_ + key, std::string(data.begin(), data.end()));
    if (!s.ok()) throw std::runtime_error(s.ToString());
  }
  std::vector<char> get(const std::string& key) override {
    auto v = client_->Get(prefix_ + key, timeout_);
    if (!v.ok()) throw std::runtime_error(v.status().ToString());
    return std::vector<char>(v->begin(), v->end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    for (const std::string& key : keys) {
      auto v = client_->Get(prefix_ + key, timeout);
      if (!v.ok()) throw std::runtime_error(v.status().ToString());
    }
  }

 private:
  RendezvousClient* client_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
};

// The process's socket descriptors now.
std::set<int> SocketFds() {
  std::set<int> out;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  while (dirent* e = readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    struct stat st;
    if (e->d_name[0] != '.' && fd != dirfd(dir) && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
      out.insert(fd);
    }
  }
  closedir(dir);
  return out;
}

class GlooCollective : public Collective {
 public:
  GlooCollective(std::shared_ptr<gloo::rendezvous::Context> context,
                 std::chrono::milliseconds timeout, std::vector<int> sockets)
      : context_(std::move(context)), timeout_(timeout), sockets_(std::move(sockets)) {}

  absl::Status AllReduceSum(at::Tensor& buffer) override {
    if (aborted_) return absl::AbortedError("gloo: the group was aborted");
    if (!buffer.is_contiguous() || buffer.scalar_type() != at::kFloat ||
        !buffer.device().is_cpu()) {
      return absl::InvalidArgumentError("gloo: all-reduce takes a contiguous float32 CPU tensor");
    }
    if (context_->size == 1) return absl::OkStatus();
    return Run("all-reduce", [&] {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(buffer.data_ptr<float>(), static_cast<size_t>(buffer.numel()));
      opts.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      opts.setTimeout(timeout_);
      opts.setTag(tag_++);
      gloo::allreduce(opts);
    });
  }

  absl::Status Broadcast(at::Tensor& buffer, int64_t root) override {
    if (aborted_) return absl::AbortedError("gloo: the group was aborted");
    if (!buffer.is_contiguous() || !buffer.device().is_cpu()) {
      return absl::InvalidArgumentError("gloo: broadcast takes a contiguous CPU tensor");
    }
    if (root < 0 || root >= context_->size) {
      return absl::InvalidArgumentError(
          absl::StrCat("gloo: broadcast root ", root, " of world ", context_->size));
    }
    if (context_->size == 1 || buffer.nbytes() == 0) return absl::OkStatus();
    return Run("broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<uint8_t*>(buffer.data_ptr()), buffer.nbytes());
      opts.setRoot(static_cast<int>(root));
      opts.setTimeout(timeout_);
      opts.setTag(tag_++);
      gloo::broadcast(opts);
    });
  }

  // The descriptors stay open (the context closes them when it goes): no other file can
  // take their numbers while the group lives.
  void Abort() override {
    if (aborted_.exchange(true)) return;
    for (int fd : sockets_) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  // Runs one Gloo operation; Gloo reports failure by throwing, after which the group is
  // unusable.
  template <typename Op>
  absl::Status Run(const char* what, Op&& op) {
    try {
      op();
    } catch (const std::exception& e) {
      aborted_ = true;
      return absl::UnavailableError(absl::StrCat("gloo ", what,
                                                 " failed (a peer died or timed out after ",
                                                 timeout_.count(), " ms): ", e.what()));
    }
    return absl::OkStatus();
  }

  std::shared_ptr<gloo::rendezvous::Context> context_;
  std::chrono::milliseconds timeout_;
  const std::vector<int> sockets_;  // the mesh's connections
  uint32_t tag_ = 0;
  std::atomic<bool> aborted_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> CreateGlooCollective(const CollectiveOptions& options,
                                                                 RendezvousClient* store) {
  try {
    gloo::transport::tcp::attr attr(options.gloo_host.c_str());
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(
        static_cast<int>(options.rank), static_cast<int>(options.world_size));
    context->setTimeout(options.timeout);
    GlooStore gloo_store(store, options.prefix + "gloo/", options.timeout);
    const std::set<int> before = SocketFds();
    context->connectFullMesh(gloo_store, device);
    std::vector<int> sockets;
    for (int fd : SocketFds()) {
      if (before.count(fd) == 0) sockets.push_back(fd);
    }
    LM_LOG(INFO) << "gloo group " << options.prefix << ": rank " << options.rank << " of "
                 << options.world_size << " connected";
    return std::unique_ptr<Collective>(
        new GlooCollective(std::move(context), options.timeout, std::move(sockets)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("gloo: meeting the group ", options.prefix,
                                               " as rank ", options.rank, " failed: ", e.what()));
  }
}

}  // namespace llava
