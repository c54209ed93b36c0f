// MNIST data in the IDX format: validated reading (raw or gzip), writing (raw or gzip,
// byte-deterministic), and conversion of samples to tensors.
// Thread-safe: free functions without shared state; a MnistSet is immutable once loaded.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

inline constexpr uint32_t kIdxImagesMagic = 0x00000803;  // unsigned byte, 3 dims
inline constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned byte, 1 dim
inline constexpr int kMnistClasses = 10;
// Decompressed IDX files larger than this are rejected (the real MNIST train images
// file is 47 MB), so a hostile gzip cannot exhaust memory.
inline constexpr int64_t kMaxIdxBytes = int64_t{1} << 30;

// One IDX images file: n images of rows x cols, row-major.
struct IdxImages {
  int64_t n = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // [n, rows, cols]
};

// Images with their digit labels (0..9), in file order.
struct MnistSet {
  int64_t rows = 28, cols = 28;
  std::vector<uint8_t> pixels;  // [n, rows, cols]
  std::vector<uint8_t> labels;  // [n]
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t image_size() const { return rows * cols; }
  // First pixel of sample i (i < size()).
  const uint8_t* image(int64_t i) const { return pixels.data() + i * image_size(); }
};

// Readers accept raw or gzip files (detected by the gzip magic 1f 8b, not the name).
absl::StatusOr<IdxImages> ReadIdxImages(const std::string& path);
absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path);

// Reads an images/labels pair and checks it is an MNIST set: equal counts, labels 0..9.
// limit: keep only the first `limit` samples (-1: all; more than the file has is an error).
absl::StatusOr<MnistSet> LoadMnist(const std::string& images_path, const std::string& labels_path,
                                   int64_t limit = -1);

// dir/<split>-images-idx3-ubyte[.gz] and dir/<split>-labels-idx1-ubyte[.gz] (the .gz
// name wins when both exist); split is "train" or "test".
absl::StatusOr<MnistSet> LoadMnistSplit(const std::string& dir, const std::string& split,
                                        int64_t limit = -1);
// Path of one split file as LoadMnistSplit resolves it; kind is "images" or "labels".
absl::StatusOr<std::string> FindMnistFile(const std::string& dir, const std::string& split,
                                          const std::string& kind);

// Writers replace `path` atomically. gzip output carries mtime 0 and no name, so equal
// data gives equal bytes.
absl::Status WriteIdxImages(const std::string& path, const IdxImages& images, bool gzip);
absl::Status WriteIdxImages(const std::string& path, const uint8_t* pixels, int64_t n, int64_t rows,
                            int64_t cols, bool gzip);
absl::Status WriteIdxLabels(const std::string& path, const std::vector<uint8_t>& labels, bool gzip);

// Samples [begin, end) (0 <= begin <= end <= size(); a violation is a caller bug and
// aborts) as float32 pixel/255 in [0, 1], shape [end-begin, rows*cols]. Mean/std
// normalization belongs to the projector, not here.
at::Tensor ImagesToTensor(const MnistSet& set, int64_t begin, int64_t end);
// Labels of samples [begin, end) as int64 [end-begin].
at::Tensor LabelsToTensor(const MnistSet& set, int64_t begin, int64_t end);

// gzip helpers shared with other file formats. GzipDecompress accepts concatenated
// members; `name` only labels errors.
absl::StatusOr<std::string> GzipCompress(const std::string& data, const std::string& name);
absl::StatusOr<std::string> GzipDecompress(const std::string& data, const std::string& name,
                                           int64_t max_bytes = kMaxIdxBytes);
bool IsGzip(const std::string& data);

}  // namespace llava
