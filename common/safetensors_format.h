// The safetensors format without tensors: dtypes, the header (parsed and fully validated
// from a file's bytes), and writing a file from tensors already held as bytes. What the
// coordinator needs to treat checkpoints as bytes (select tensors by their byte ranges)
// and what common/safetensors.h builds its tensor I/O on; no libtorch. Pure functions and
// plain data; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace llava {

enum class StDtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32", "BF16", ... as written in safetensors headers.
const char* StDtypeName(StDtype dtype);
// Bytes per element.
size_t StDtypeSize(StDtype dtype);
// F64, F32, F16 or BF16.
bool StDtypeIsFloating(StDtype dtype);
// Parses a header dtype string; nullopt for anything not listed in StDtype.
std::optional<StDtype> StDtypeFromName(std::string_view name);

struct StTensorInfo {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets in the data section
};

// A file's header: every entry checked (dtype, shape, byte count, offsets inside the data
// section and not overlapping), duplicate keys and deep nesting refused.
struct SafetensorsHeader {
  std::vector<StTensorInfo> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // bytes before the data section (8 + header length)

  const StTensorInfo* Find(std::string_view name) const;
};

// DATA_LOSS naming `source` when a file of `size` bytes cannot hold the 8-byte length.
absl::Status CheckSafetensorsSize(uint64_t size, const std::string& source);
// The header of the file whose `size` bytes start at `data`; errors name `source`.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(const uint8_t* data, uint64_t size,
                                                         const std::string& source);

// Parses JSON text, refusing duplicate keys in any object (nlohmann keeps the last one
// silently, which would let two tensors claim one name) and deep nesting. Errors
// (DATA_LOSS) name `source`.
absl::StatusOr<nlohmann::json> ParseJsonNoDuplicates(const char* begin, const char* end,
                                                     const std::string& source);

// A tensor to write, as the little-endian bytes of its elements in row-major order.
struct StRawTensor {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;
  std::string_view bytes;  // must outlive the call
};

// INVALID_ARGUMENT "cannot serialize tensor 'NAME': ..." for an empty, reserved
// ("__metadata__") or repeated name; `seen` collects the names so far.
absl::Status CheckTensorName(const std::string& name, std::set<std::string_view>* seen);

// The whole file. Like the Rust implementation (and so Python's save_file), the data
// section is ordered by element size descending then by name, so that every tensor is
// aligned for its dtype, and the header lists tensors in that order, after "__metadata__"
// (omitted when empty), padded with spaces to 8 bytes.
absl::StatusOr<std::string> SerializeSafetensorsBytes(
    std::vector<StRawTensor> tensors, const std::map<std::string, std::string>& metadata);

// The file of `bytes` with only the tensors `keep` accepts, copied by their byte ranges
// (no decoding), and the same metadata: byte-identical to writing those tensors anew.
template <typename Keep>
absl::StatusOr<std::string> SelectSafetensors(const std::string& bytes,
                                              const SafetensorsHeader& header, Keep keep) {
  std::vector<StRawTensor> kept;
  for (const StTensorInfo& info : header.tensors) {
    if (!keep(info)) continue;
    kept.push_back(
        {info.name, info.dtype, info.shape,
         std::string_view(bytes).substr(header.data_start + info.begin, info.end - info.begin)});
  }
  return SerializeSafetensorsBytes(std::move(kept), header.metadata);
}

}  // namespace llava
