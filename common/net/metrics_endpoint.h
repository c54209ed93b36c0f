// One process's Prometheus endpoint: a small HTTP/1.1 server on its own thread that
// answers GET /metrics with the text exposition of the collectables added (registries,
// scrape-time collectors; read from the server thread: they must be thread-safe).
// Connections are read side by side (at most 64; the oldest makes room), each closed at
// its timeout, so that idle connections never delay a scrape; anything but GET /metrics
// gets 404 or 405. (prometheus-cpp's own civetweb exposer cannot start its
// threads in a process that has loaded Debian's libtorch, hence this one.)
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"

#include "common/net/metric_family.h"

namespace llava {

class MetricsEndpoint {
 public:
  // `listen`: IPV4:PORT or :PORT (all interfaces); port 0: any free port (see port()).
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& listen,
      std::chrono::milliseconds io_timeout = std::chrono::milliseconds(5000));
  ~MetricsEndpoint();

  int port() const { return port_; }
  // Served as long as it lives (held weakly).
  void Add(const std::shared_ptr<prometheus::Collectable>& collectable);
  // The exposition text a scrape gets now.
  std::string Render() const;

 private:
  MetricsEndpoint() = default;
  void Serve();
  void Answer(int fd, const std::string& request) const;

  mutable absl::Mutex mu_;
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables_ ABSL_GUARDED_BY(mu_);
  std::chrono::milliseconds io_timeout_{5000};
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace llava
