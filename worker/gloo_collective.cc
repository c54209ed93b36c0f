// Gloo over TCP for CPU workers: the full mesh is met through the coordinator's store,
// and every transport wait is bounded by the group's timeout. Abort() makes a pending
// operation fail at once: Gloo has no call for that, so it shuts down the group's own
// sockets (those the mesh opened), which its transport then reports as peers gone.
// Gloo writes with writev(2), which cannot ask for MSG_NOSIGNAL, so the process ignores
// SIGPIPE once it makes a group (see IgnoreSigpipe).
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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

// A write to a connection that is gone (the peer closed or reset it, or our own Abort()
// shut it down) raises SIGPIPE, whose default action ends the process without a word:
// a rank resumed after SIGSTOP whose peer left meanwhile, or one aborted while its
// transport still sends, then dies instead of failing the collective. With the signal
// ignored the write fails with EPIPE and Gloo reports the peer gone. So SIGPIPE is
// ignored, unless the program already chose a disposition of its own.
void IgnoreSigpipe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current = {};
    if (sigaction(SIGPIPE, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) return;
    struct sigaction ignore = {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, nullptr);
  });
}

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
    // By value: an abandoned operation outlives this call (see Run).
    return Run("all-reduce", [context = context_, buffer, timeout = timeout_, tag = tag_++] {
      gloo::AllreduceOptions opts(context);
      opts.setOutput(buffer.data_ptr<float>(), static_cast<size_t>(buffer.numel()));
      opts.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      opts.setTimeout(timeout);
      opts.setTag(tag);
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
    return Run("broadcast", [context = context_, buffer, root, timeout = timeout_, tag = tag_++] {
      gloo::BroadcastOptions opts(context);
      opts.setOutput(static_cast<uint8_t*>(buffer.data_ptr()), buffer.nbytes());
      opts.setRoot(static_cast<int>(root));
      opts.setTimeout(timeout);
      opts.setTag(tag);
      gloo::broadcast(opts);
    });
  }

  // The descriptors stay open (the context closes them when it goes): no other file can
  // take their numbers while the group lives.
  void Abort() override {
    if (aborted_.exchange(true)) return;
    for (int fd : sockets_) ::shutdown(fd, SHUT_RDWR);
    std::shared_ptr<OpState> pending;
    {
      absl::MutexLock lock(&mu_);
      pending = pending_;
    }
    if (pending == nullptr) return;
    absl::MutexLock lock(&pending->mu);
    pending->abandoned = true;  // Run returns now
  }

 private:
  // One operation, shared by its thread, Run and Abort.
  struct OpState {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    bool abandoned ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
  };

  // Runs one Gloo operation (`op` holds what it uses by value) on a thread of its own, and
  // returns when it ends or Abort() comes, whichever is first. Gloo reports failure by
  // throwing, after which the group is unusable. Abort() shuts the sockets down, but Gloo
  // fails only the waits its transport still tracks: a send it had queued and could not
  // finish (the peer gone, or our own shutdown) is not among them, so its wait lasts the
  // whole timeout. An aborted operation is therefore left to end on its own thread (by the
  // failure or the timeout), holding what it uses, the context included.
  template <typename Op>
  absl::Status Run(const char* what, Op op) {
    auto state = std::make_shared<OpState>();
    {
      absl::MutexLock lock(&mu_);
      pending_ = state;
    }
    if (aborted_) {  // Abort() may have come before pending_ was set
      absl::MutexLock lock(&mu_);
      pending_.reset();
      return absl::AbortedError("gloo: the group was aborted");
    }
    try {
      std::thread([state, op = std::move(op)] {
        absl::Status status;
        try {
          op();
        } catch (const std::exception& e) {
          status = absl::UnavailableError(e.what());
        }
        absl::MutexLock lock(&state->mu);
        state->status = std::move(status);
        state->done = true;
      }).detach();
    } catch (const std::system_error& e) {  // no thread to be had
      absl::MutexLock lock(&mu_);
      pending_.reset();
      return absl::UnavailableError(absl::StrCat("gloo ", what, ": ", e.what()));
    }
    bool abandoned = false;
    absl::Status status;
    {
      absl::MutexLock lock(&state->mu);
      state->mu.Await(absl::Condition(
          +[](OpState* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->done || s->abandoned; },
          state.get()));
      abandoned = !state->done;
      status = state->status;
    }
    {
      absl::MutexLock lock(&mu_);
      pending_.reset();
    }
    if (abandoned) {
      return absl::AbortedError(absl::StrCat("gloo: the group was aborted during the ", what));
    }
    if (status.ok()) return status;
    aborted_ = true;
    return absl::UnavailableError(absl::StrCat("gloo ", what,
                                               " failed (a peer died or timed out after ",
                                               timeout_.count(), " ms): ", status.message()));
  }

  std::shared_ptr<gloo::rendezvous::Context> context_;
  std::chrono::milliseconds timeout_;
  const std::vector<int> sockets_;  // the mesh's connections
  uint32_t tag_ = 0;
  std::atomic<bool> aborted_{false};
  absl::Mutex mu_;
  std::shared_ptr<OpState> pending_ ABSL_GUARDED_BY(mu_);  // the operation Run waits on
};

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> CreateGlooCollective(const CollectiveOptions& options,
                                                                 RendezvousClient* store) {
  IgnoreSigpipe();  // before the group has a socket to write to
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
