// libFuzzer target: a PNG's bytes as `ask` receives them, decoded to gray, turned into an
// MNIST-style digit, and re-encoded (which must decode to the same pixels).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/png_image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto image = llava::DecodePngGray(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.png");
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
