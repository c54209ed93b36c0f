// SHA-256 of byte strings (OpenSSL's libcrypto), as lowercase hex: the checksum that
// checkpoints carry over the wire and on disk. Thread-safe: no shared state.
#pragma once

#include <string>
#include <string_view>

namespace llava {

std::string Sha256Hex(std::string_view data);

// Incremental form, for data that arrives in chunks.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  std::string FinishHex();  // once

 private:
  void* ctx_;  // EVP_MD_CTX
};

}  // namespace llava
