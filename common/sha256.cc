#include "common/sha256.h"

#include <openssl/evp.h>

#include "common/log.h"

namespace llava {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  LM_CHECK(ctx_ != nullptr);
  LM_CHECK_EQ(EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr), 1);
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::Update(std::string_view data) {
  LM_CHECK_EQ(EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size()), 1);
}

std::string Sha256::FinishHex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  LM_CHECK_EQ(EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &len), 1);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.FinishHex();
}

}  // namespace llava
