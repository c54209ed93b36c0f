// PNG images as 8-bit grayscale (any PNG in, via libpng with errors as absl::Status) and
// the MNIST preprocessing that turns a user's digit picture into a 28x28 MNIST-like sample.
// Thread-safe: free functions without shared state (each call owns its libpng structs).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

// Decoded images larger than this on either side are rejected.
inline constexpr int64_t kMaxPngSide = 8192;

struct GrayImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height, width], row-major
  uint8_t at(int64_t x, int64_t y) const { return pixels[y * width + x]; }
};

// Any PNG (palette, gray, gray+alpha, RGB, RGBA; 1..16 bits; interlaced or not) to 8-bit
// gray: luma 0.299 R + 0.587 G + 0.114 B, alpha composited over white (so a transparent
// background reads as paper). No gamma correction.
absl::StatusOr<GrayImage> ReadPngGray(const std::string& path);
// Same, from the file's bytes; `name` labels errors (a path, an RPC field).
absl::StatusOr<GrayImage> DecodePngGray(std::string_view data, const std::string& name);

// 8-bit gray PNG; writes `path` atomically; equal images give equal bytes.
absl::Status WritePngGray(const std::string& path, const GrayImage& image);
absl::StatusOr<std::string> EncodePngGray(const GrayImage& image, const std::string& name);

struct MnistStyleOptions {
  // After polarity and background removal, pixels above the paper's noise level (0 on a
  // clean image) and above this floor are ink, which defines the bounding box.
  int ink_threshold = 0;
  // The ink's bounding box is scaled so that its larger side is box_size...
  int box_size = 20;
  // ...and pasted into a canvas_size square, centered by its center of mass.
  int canvas_size = 28;
};

// MNIST's preprocessing: white digit on black (inverted when the border is brighter than
// the center, i.e. dark ink on paper), background level subtracted, cropped to the ink,
// resampled (area averaging down, bilinear up) to fit box_size, placed by center of mass.
// An image without ink (blank, uniform, empty) gives an all-zero canvas.
// Aborts only on a GrayImage whose pixels.size() != width * height (a caller bug).
GrayImage ToMnistStyle(const GrayImage& image, const MnistStyleOptions& options = {});

// ReadPngGray + ToMnistStyle.
absl::StatusOr<GrayImage> LoadPngAsMnist(const std::string& path,
                                         const MnistStyleOptions& options = {});

// pixel/255 as float32 [height * width] in [0, 1] (784 values for an MNIST-style image),
// the same scaling as ImagesToTensor in common/mnist_idx.h.
at::Tensor GrayImageToTensor(const GrayImage& image);

}  // namespace llava
