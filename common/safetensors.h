// Safetensors I/O: reads single-file and sharded Hugging Face checkpoints (mmapped, one tensor
// at a time, never a whole second copy in host memory) and writes files Python's safetensors
// loads; the format without tensors (dtypes, the header, writing bytes) is
// common/safetensors_format.h. Threading: SafetensorsFile/Checkpoint are immutable after
// Open; const methods are safe.
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
#include "common/safetensors_format.h"

namespace llava {

at::ScalarType StDtypeToScalarType(StDtype dtype);
// InvalidArgument for torch dtypes that safetensors (or this reader) cannot store.
absl::StatusOr<StDtype> StDtypeFromScalarType(at::ScalarType type);

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
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes,
                                                                    const std::string& source_name);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<StTensorInfo>& tensors() const { return header_.tensors; }  // sorted by name
  const StTensorInfo* Find(std::string_view name) const { return header_.Find(name); }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // Bytes before the data section (8 + header length).
  uint64_t data_start() const { return header_.data_start; }

  absl::StatusOr<at::Tensor> Load(std::string_view name, const LoadOptions& options = {}) const;
  // Every tensor, in name order.
  absl::StatusOr<std::vector<NamedTensor>> LoadAll(const LoadOptions& options = {}) const;

 private:
  struct Buffer;  // the mmap or the owned bytes
  SafetensorsFile(std::string path, std::unique_ptr<Buffer> buffer);

  std::string path_;
  std::unique_ptr<Buffer> buffer_;
  SafetensorsHeader header_;
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
  absl::StatusOr<at::Tensor> LoadWithShape(std::string_view name, const std::vector<int64_t>& shape,
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

// The whole file as bytes (laid out as SerializeSafetensorsBytes does). Tensors may live
// on any device and be non-contiguous; they are copied to contiguous CPU memory.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<NamedTensor>& tensors,
    const std::map<std::string, std::string>& metadata = {});
// SerializeSafetensors written atomically (temp file, fsync, rename) to `path`.
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace llava
