// libFuzzer target: a PNG's bytes as `ask` receives them, decoded to gray, turned into an
// MNIST-style digit, and re-encoded (which must decode to the same pixels). Chunk CRCs are
// recomputed first, so that mutations reach the decoder rather than its CRC check.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/png_image.h"

namespace {

uint32_t Be32(const std::string& s, size_t at) {
  return uint32_t{static_cast<uint8_t>(s[at])} << 24 |
         uint32_t{static_cast<uint8_t>(s[at + 1])} << 16 |
         uint32_t{static_cast<uint8_t>(s[at + 2])} << 8 | static_cast<uint8_t>(s[at + 3]);
}

void FixChunkCrcs(std::string* png) {
  size_t at = 8;  // after the signature
  while (at + 12 <= png->size()) {
    const uint64_t length = Be32(*png, at);
    if (length > png->size() - at - 12) return;
    const uint32_t crc = static_cast<uint32_t>(crc32(
        0, reinterpret_cast<const Bytef*>(png->data() + at + 4), static_cast<uInt>(length + 4)));
    for (int i = 0; i < 4; ++i)
      (*png)[at + 8 + length + i] = static_cast<char>(crc >> (24 - 8 * i));
    at += 12 + length;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  FixChunkCrcs(&bytes);
  auto image = llava::DecodePngGray(bytes, "fuzz.png");
  if (!image.ok()) return 0;
  const llava::GrayImage digit = llava::ToMnistStyle(*image);
  (void)llava::GrayImageToTensor(digit);
  auto encoded = llava::EncodePngGray(*image, "fuzz.png");
  if (!encoded.ok()) return 0;
  auto again = llava::DecodePngGray(*encoded, "fuzz.png (re-encoded)");
  if (!again.ok() || again->width != image->width || again->height != image->height ||
      again->pixels != image->pixels) {
    std::fprintf(stderr, "a decoded PNG did not survive EncodePngGray + DecodePngGray\n");
    std::abort();
  }
  return 0;
}
