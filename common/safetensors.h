// Safetensors I/O: reads single-file and sharded Hugging Face checkpoints (mmapped, one tensor
// at a time, never a whole second copy in host memory) and writes files Python's safetensors
// loads. Threading: SafetensorsFile/Checkpoint are immutable after Open; const methods are safe.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

enum class StDtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32", "BF16", ... as written in safetensors headers.
const char* StDtypeName(StDtype dtype);
// Bytes per element.
size_t StDtypeSize(StDtype dtype);
// Parses a header dtype string; nullopt for anything not listed in StDtype.
std::optional<StDtype> StDtypeFromName(std::string_view name);
at::ScalarType StDtypeToScalarType(StDtype dtype);
// InvalidArgument for torch dtypes that safetensors (or this reader) cannot store.
absl::StatusOr<StDtype> StDtypeFromScalarType(at::ScalarType type);

struct StTensorInfo {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets in the data section
};

struct LoadOptions {
  std::optional<at::ScalarType> dtype;  // default: as stored
  at::Device device = at::kCPU;
};

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

// One safetensors file, mmapped read-only (or held in memory for FromBytes). The header
// is fully validated at Open, so Load only fails for missing tensors, conversions or
// device errors. Loaded tensors own their memory: they stay valid after this is gone.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses a whole file held in memory (e.g. received over RPC); `source_name` stands
  // in for the path in error messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(
      std::string bytes, const std::string& source_name);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<StTensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const StTensorInfo* Find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Bytes before the data section (8 + header length).
  uint64_t data_start() const { return data_start_; }

  absl::StatusOr<at::Tensor> Load(std::string_view name, const LoadOptions& options = {}) const;
  // Every tensor, in name order.
  absl::StatusOr<std::vector<NamedTensor>> LoadAll(const LoadOptions& options = {}) const;

 private:
  struct Buffer;  // the mmap or the owned bytes
  SafetensorsFile(std::string path, std::unique_ptr<Buffer> buffer);
  absl::Status ParseHeader();

  std::string path_;
  std::unique_ptr<Buffer> buffer_;
  uint64_t data_start_ = 0;
  std::vector<StTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint addressed by a directory (holding model.safetensors or
// model.safetensors.index.json), an index .json file, or a .safetensors file.
// Shards are all opened (mmapped and header-checked) at Open; no data is read until Load.
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir_or_file);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool Contains(std::string_view name) const;
  absl::StatusOr<std::vector<int64_t>> Shape(std::string_view name) const;
  // The file holding `name` and its header entry; NotFound naming the checkpoint.
  absl::StatusOr<std::pair<const SafetensorsFile*, const StTensorInfo*>> Locate(
      std::string_view name) const;
  absl::StatusOr<at::Tensor> Load(std::string_view name, const LoadOptions& options = {}) const;
  // Loads `name`, checking its shape equals `shape` (error names file, tensor, both shapes).
  absl::StatusOr<at::Tensor> LoadWithShape(std::string_view name,
                                           const std::vector<int64_t>& shape,
                                           const LoadOptions& options = {}) const;
  // The single file's __metadata__, or the shards' merged (first shard by file name wins
  // on conflicting keys).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  Checkpoint() = default;
  absl::Status OpenSingle(const std::string& file);
  absl::Status OpenSharded(const std::string& index_file);

  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  // name -> index into files_.
  std::map<std::string, size_t, std::less<>> where_;
  std::map<std::string, std::string> metadata_;
};

// The whole file as bytes. Tensors may live on any device and be non-contiguous; they
// are copied to contiguous CPU memory. Like the Rust implementation (and so Python's
// save_file), the data section is ordered by element size descending then by name, so
// that every tensor is aligned for its dtype, and the header lists tensors in that
// order, after "__metadata__" (omitted when empty), padded with spaces to 8 bytes.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<NamedTensor>& tensors,
    const std::map<std::string, std::string>& metadata = {});
// SerializeSafetensors written atomically (temp file, fsync, rename) to `path`.
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace llava
