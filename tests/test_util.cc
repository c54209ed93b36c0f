#include "tests/test_util.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace llava::testing {
namespace {
std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}
}  // namespace

std::string SourceDir() { return LLAVA_SOURCE_DIR; }
std::string BinaryPath() { return std::string(LLAVA_BINARY_DIR) + "/bin/llava-mnist"; }

std::string FixturesDir() { return EnvOr("LLAVA_FIXTURES", SourceDir() + "/../shared/fixtures"); }

std::string TokenizerPath() {
  return EnvOr("LLAVA_TOKENIZER", SourceDir() + "/data/tokenizer/tokenizer.json");
}

std::string MakeTempDir(const std::string& tag) {
  std::string base = EnvOr("TMPDIR", "/tmp");
  std::string templ = base + "/llava-" + tag + "-XXXXXX";
  char* made = mkdtemp(templ.data());
  if (made == nullptr) return "";
  return made;
}

const TestPki& DevCertificates() {
  static const TestPki pki = [] {
    TestPki p;
    p.dir = MakeTempDir("pki");
    const std::string command = SourceDir() + "/scripts/dev_certs.sh " + p.dir + " >/dev/null 2>&1";
    if (std::system(command.c_str()) != 0) {
      ADD_FAILURE() << "scripts/dev_certs.sh failed (is openssl installed?)";
    }
    p.ca = p.dir + "/ca.crt";
    p.server_cert = p.dir + "/server-tls/tls.crt";
    p.server_key = p.dir + "/server-tls/tls.key";
    p.client_cert = p.dir + "/client-tls/tls.crt";
    p.client_key = p.dir + "/client-tls/tls.key";
    p.token = p.dir + "/auth/token";
    return p;
  }();
  return pki;
}

HttpReply HttpRequest(int port, const std::string& method, const std::string& path) {
  HttpReply reply;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return reply;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return reply;
  }
  const std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return reply;
  }
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) all.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t head_end = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos) return reply;
  reply.code = std::atoi(all.c_str() + 9);
  reply.body = all.substr(head_end + 4);
  return reply;
}

}  // namespace llava::testing
