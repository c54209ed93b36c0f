#include "common/net/metrics_endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/collectable.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace llava {
namespace {

constexpr size_t kMaxRequestBytes = 8192;

void SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the scraper went away or timed out: nothing to do
    off += static_cast<size_t>(n);
  }
}

std::string Response(const char* status, const std::string& content_type, const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& listen, std::chrono::milliseconds io_timeout) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_listen: '", listen, "' is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_listen: '", host, "' is not an IPv4 address"));
  }
  std::unique_ptr<MetricsEndpoint> m(new MetricsEndpoint());
  m->io_timeout_ = io_timeout;
  m->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (m->listen_fd_ < 0) return absl::UnavailableError("--metrics_listen: no socket");
  const int one = 1;
  setsockopt(m->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  socklen_t len = sizeof(addr);
  if (bind(m->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(m->listen_fd_, 16) != 0 ||
      getsockname(m->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string error = strerror(errno);
    close(m->listen_fd_);
    m->listen_fd_ = -1;
    return absl::UnavailableError(
        absl::StrCat("--metrics_listen: cannot listen on ", listen, ": ", error));
  }
  m->port_ = ntohs(addr.sin_port);
  m->thread_ = std::thread([raw = m.get()] { raw->Serve(); });
  return m;
}

MetricsEndpoint::~MetricsEndpoint() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void MetricsEndpoint::Add(const std::shared_ptr<prometheus::Collectable>& collectable) {
  absl::MutexLock lock(&mu_);
  collectables_.push_back(collectable);
}

std::string MetricsEndpoint::Render() const {
  std::vector<prometheus::MetricFamily> families;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& weak : collectables_) {
      if (auto c = weak.lock()) {
        for (auto& f : c->Collect()) families.push_back(std::move(f));
      }
    }
  }
  return prometheus::TextSerializer().Serialize(families);
}

void MetricsEndpoint::Serve() {
  // Connections are read side by side, each until its request is whole or its deadline:
  // an idle or slow client never delays another's scrape.
  struct Conn {
    int fd;
    std::string request;
    std::chrono::steady_clock::time_point deadline;
  };
  constexpr size_t kMaxConns = 64;
  std::vector<Conn> conns;
  while (!stop_.load()) {
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
    for (const Conn& c : conns) fds.push_back({c.fd, POLLIN, 0});
    // A short period so that the destructor's stop and the deadlines are seen promptly.
    if (poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) continue;
    const auto now = std::chrono::steady_clock::now();
    std::vector<Conn> next;
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn& c = conns[i];
      bool done = false;
      if (fds[i + 1].revents != 0) {
        char buf[1024];
        const ssize_t n = recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) c.request.append(buf, static_cast<size_t>(n));
        const bool whole =
            c.request.find("\r\n\r\n") != std::string::npos || c.request.size() >= kMaxRequestBytes;
        if (whole) Answer(c.fd, c.request);
        done = whole || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
      }
      if (done || now >= c.deadline) {
        close(c.fd);
      } else {
        next.push_back(std::move(c));
      }
    }
    conns = std::move(next);
    if (fds[0].revents & POLLIN) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        timeval tv{};
        tv.tv_sec = io_timeout_.count() / 1000;
        tv.tv_usec = (io_timeout_.count() % 1000) * 1000;
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (conns.size() >= kMaxConns) {  // the oldest makes room
          close(conns.front().fd);
          conns.erase(conns.begin());
        }
        conns.push_back({fd, std::string(), now + io_timeout_});
      }
    }
  }
  for (const Conn& c : conns) close(c.fd);
}

void MetricsEndpoint::Answer(int fd, const std::string& request) const {
  const std::string line = request.substr(0, request.find("\r\n"));
  if (!absl::StartsWith(line, "GET ")) {
    SendAll(fd, Response("405 Method Not Allowed", "text/plain", "only GET /metrics\n"));
    return;
  }
  const size_t path_end = line.find(' ', 4);
  const std::string path =
      line.substr(4, path_end == std::string::npos ? std::string::npos : path_end - 4);
  if (path != "/metrics" && !absl::StartsWith(path, "/metrics?")) {
    SendAll(fd, Response("404 Not Found", "text/plain", "see /metrics\n"));
    return;
  }
  SendAll(fd, Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", Render()));
}

}  // namespace llava
