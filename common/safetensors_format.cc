#include "common/safetensors_format.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_depth.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace llava {

// The format stores little-endian numbers; we copy them as host words.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes little-endian");

namespace {

using json = nlohmann::json;

// The Rust implementation's limit; a larger header is a corrupt or hostile file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeRow {
  StDtype dtype;
  const char* name;
  size_t size;
  bool floating;
  // Position in the Rust Dtype enum (declared in increasing alignment); the writer puts
  // higher ranks first, as Rust's serializer does.
  int rust_rank;
};

constexpr DtypeRow kDtypes[] = {
    {StDtype::kBool, "BOOL", 1, false, 0}, {StDtype::kU8, "U8", 1, false, 1},
    {StDtype::kI8, "I8", 1, false, 2},     {StDtype::kI16, "I16", 2, false, 3},
    {StDtype::kF16, "F16", 2, true, 4},    {StDtype::kBF16, "BF16", 2, true, 5},
    {StDtype::kI32, "I32", 4, false, 6},   {StDtype::kF32, "F32", 4, true, 7},
    {StDtype::kF64, "F64", 8, true, 8},    {StDtype::kI64, "I64", 8, false, 9},
};

const DtypeRow& Row(StDtype dtype) {
  for (const DtypeRow& row : kDtypes) {
    if (row.dtype == dtype) return row;
  }
  LM_CHECK(false) << "unhandled StDtype " << static_cast<int>(dtype);
  return kDtypes[0];
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// "safetensors file F: tensor 'T': what" -- every header error names file and tensor.
absl::Status TensorError(absl::StatusCode code, const std::string& file, const std::string& tensor,
                         absl::string_view what) {
  return absl::Status(code,
                      absl::StrCat("safetensors file ", file, ": tensor '", tensor, "': ", what));
}

absl::Status FileError(absl::StatusCode code, const std::string& file, absl::string_view what) {
  return absl::Status(code, absl::StrCat("safetensors file ", file, ": ", what));
}

// A JSON integer as int64 (shape dims may be written signed so that negatives are caught).
bool JsonToInt64(const json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return true;
  }
  return false;
}

// One header entry -> StTensorInfo, checking types, dims and the byte count against
// the data section of `data_size` bytes.
absl::StatusOr<StTensorInfo> ParseEntry(const std::string& file, const std::string& name,
                                        const json& entry, uint64_t data_size) {
  auto bad = [&](absl::string_view what) {
    return TensorError(absl::StatusCode::kDataLoss, file, name, what);
  };
  if (!entry.is_object()) return bad("header entry is not a JSON object");
  StTensorInfo info;
  info.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) return bad("missing \"dtype\"");
  if (!dtype_it->is_string()) return bad("\"dtype\" is not a string");
  std::string dtype_name = dtype_it->get<std::string>();
  std::optional<StDtype> dtype = StDtypeFromName(dtype_name);
  if (!dtype) return bad(absl::StrCat("unknown or unsupported dtype \"", dtype_name, "\""));
  info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) return bad("missing \"shape\"");
  if (!shape_it->is_array()) return bad("\"shape\" is not an array");
  uint64_t numel = 1;
  for (const json& d : *shape_it) {
    int64_t dim = 0;
    if (!JsonToInt64(d, &dim))
      return bad(absl::StrCat("shape entry ", d.dump(), " is not an integer"));
    if (dim < 0)
      return bad(absl::StrCat("negative dimension ", dim, " in shape ", shape_it->dump()));
    info.shape.push_back(dim);
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel)) {
      return bad(absl::StrCat("shape ", shape_it->dump(), " overflows the element count"));
    }
  }
  uint64_t nbytes = 0;
  if (numel > static_cast<uint64_t>(INT64_MAX) ||
      __builtin_mul_overflow(numel, StDtypeSize(info.dtype), &nbytes)) {
    return bad(absl::StrCat("shape ", shape_it->dump(), " overflows the byte count"));
  }

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end()) return bad("missing \"data_offsets\"");
  if (!off_it->is_array() || off_it->size() != 2 || !(*off_it)[0].is_number_unsigned() ||
      !(*off_it)[1].is_number_unsigned()) {
    return bad(absl::StrCat("\"data_offsets\" ", off_it->dump(),
                            " is not [begin, end] with non-negative integers"));
  }
  info.begin = (*off_it)[0].get<uint64_t>();
  info.end = (*off_it)[1].get<uint64_t>();
  if (info.begin > info.end) {
    return bad(absl::StrCat("data_offsets begin ", info.begin, " > end ", info.end));
  }
  if (info.end > data_size) {
    return bad(absl::StrCat("data_offsets [", info.begin, ", ", info.end,
                            "] run past the data section of ", data_size, " bytes"));
  }
  if (info.end - info.begin != nbytes) {
    return bad(absl::StrCat("data_offsets [", info.begin, ", ", info.end, "] hold ",
                            info.end - info.begin, " bytes but ", dtype_name, " ",
                            ShapeString(info.shape), " needs ", nbytes));
  }
  return info;
}

absl::Status CheckNoOverlap(const std::string& file, const std::vector<StTensorInfo>& tensors) {
  std::vector<const StTensorInfo*> by_begin;
  for (const StTensorInfo& t : tensors) {
    if (t.end > t.begin) by_begin.push_back(&t);  // empty tensors occupy no bytes
  }
  std::sort(by_begin.begin(), by_begin.end(),
            [](const StTensorInfo* a, const StTensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_begin.size(); ++i) {
    const StTensorInfo& prev = *by_begin[i - 1];
    const StTensorInfo& cur = *by_begin[i];
    if (cur.begin < prev.end) {
      return TensorError(
          absl::StatusCode::kDataLoss, file, cur.name,
          absl::StrCat("data_offsets [", cur.begin, ", ", cur.end, "] overlap tensor '", prev.name,
                       "' at [", prev.begin, ", ", prev.end, "]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseMetadata(const std::string& file, const json& value,
                           std::map<std::string, std::string>* out) {
  if (!value.is_object()) {
    return FileError(absl::StatusCode::kDataLoss, file, "\"__metadata__\" is not a JSON object");
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (!it->is_string()) {
      return FileError(absl::StatusCode::kDataLoss, file,
                       absl::StrCat("\"__metadata__\" entry '", it.key(), "' is not a string"));
    }
    (*out)[it.key()] = it->get<std::string>();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BuildHeader(const std::vector<StRawTensor>& tensors,
                                        const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  try {
    if (!metadata.empty())
      absl::StrAppend(&header, "\"", kMetadataKey, "\":", json(metadata).dump());
    uint64_t offset = 0;
    for (const StRawTensor& t : tensors) {
      if (header.size() > 1) header += ',';
      absl::StrAppend(&header, json(t.name).dump(), ":{\"dtype\":\"", StDtypeName(t.dtype),
                      "\",\"shape\":[", absl::StrJoin(t.shape, ","), "],\"data_offsets\":[", offset,
                      ",", offset + t.bytes.size(), "]}");
      offset += t.bytes.size();
    }
  } catch (const json::exception& e) {
    // nlohmann refuses to write strings that are not UTF-8.
    return absl::InvalidArgumentError(
        absl::StrCat("cannot serialize safetensors header: ", e.what()));
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

}  // namespace

absl::StatusOr<json> ParseJsonNoDuplicates(const char* begin, const char* end,
                                           const std::string& source) {
  struct Frame {
    std::string owner;  // key whose value is this object ("" at the top)
    std::set<std::string> keys;
    std::string last_key;
  };
  if (auto at = JsonNestingExceeds(std::string_view(begin, end - begin))) {
    return absl::DataLossError(
        absl::StrCat(source, ": JSON nested deeper than ", kMaxJsonDepth, " levels at byte ", *at));
  }
  std::vector<Frame> stack;
  std::string duplicate, duplicate_owner;
  json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        stack.push_back(Frame{stack.empty() ? "" : stack.back().last_key, {}, {}});
        break;
      case json::parse_event_t::object_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case json::parse_event_t::key: {
        Frame& frame = stack.back();
        frame.last_key = parsed.get<std::string>();
        if (!frame.keys.insert(frame.last_key).second && duplicate.empty()) {
          duplicate = frame.last_key;
          duplicate_owner = frame.owner;
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  json parsed;
  try {
    parsed = json::parse(begin, end, callback);
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!duplicate.empty()) {
    return absl::DataLossError(
        duplicate_owner.empty()
            ? absl::StrCat(source, ": duplicate key '", duplicate, "' at the top level")
            : absl::StrCat(source, ": duplicate key '", duplicate, "' inside entry '",
                           duplicate_owner, "'"));
  }
  return parsed;
}

const char* StDtypeName(StDtype dtype) { return Row(dtype).name; }
size_t StDtypeSize(StDtype dtype) { return Row(dtype).size; }
bool StDtypeIsFloating(StDtype dtype) { return Row(dtype).floating; }

std::optional<StDtype> StDtypeFromName(std::string_view name) {
  for (const DtypeRow& row : kDtypes) {
    if (name == row.name) return row.dtype;
  }
  return std::nullopt;
}

const StTensorInfo* SafetensorsHeader::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                             [](const StTensorInfo& t, std::string_view n) { return t.name < n; });
  return (it != tensors.end() && it->name == name) ? &*it : nullptr;
}

absl::Status CheckSafetensorsSize(uint64_t size, const std::string& source) {
  if (size >= 8) return absl::OkStatus();
  return FileError(absl::StatusCode::kDataLoss, source,
                   absl::StrCat("file is ", size, " bytes, shorter than the 8-byte header length"));
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(const uint8_t* base, uint64_t size,
                                                         const std::string& source) {
  LM_RETURN_IF_ERROR(CheckSafetensorsSize(size, source));
  SafetensorsHeader out;
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);
  if (header_len > kMaxHeaderBytes) {
    return FileError(absl::StatusCode::kDataLoss, source,
                     absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                  kMaxHeaderBytes, " bytes"));
  }
  if (header_len > size - 8) {
    return FileError(absl::StatusCode::kDataLoss, source,
                     absl::StrCat("header length ", header_len, " runs past the end of the ", size,
                                  "-byte file"));
  }
  out.data_start = 8 + header_len;
  const uint64_t data_size = size - out.data_start;
  const char* text = reinterpret_cast<const char*>(base + 8);
  LM_ASSIGN_OR_RETURN(json header,
                      ParseJsonNoDuplicates(text, text + header_len,
                                            absl::StrCat("safetensors file ", source, ": header")));
  if (!header.is_object()) {
    return FileError(absl::StatusCode::kDataLoss, source, "header is not a JSON object");
  }
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      LM_RETURN_IF_ERROR(ParseMetadata(source, it.value(), &out.metadata));
      continue;
    }
    LM_ASSIGN_OR_RETURN(StTensorInfo info, ParseEntry(source, it.key(), it.value(), data_size));
    out.tensors.push_back(std::move(info));
  }
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const StTensorInfo& a, const StTensorInfo& b) { return a.name < b.name; });
  LM_RETURN_IF_ERROR(CheckNoOverlap(source, out.tensors));
  return out;
}

absl::Status CheckTensorName(const std::string& name, std::set<std::string_view>* seen) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("cannot serialize tensor '", name, "': ", what));
  };
  if (name.empty()) return bad("empty name");
  if (name == kMetadataKey) return bad("the name is reserved for metadata");
  if (!seen->insert(name).second) return bad("duplicate name");
  return absl::OkStatus();
}

absl::StatusOr<std::string> SerializeSafetensorsBytes(
    std::vector<StRawTensor> tensors, const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> seen;
  for (const StRawTensor& t : tensors) {
    LM_RETURN_IF_ERROR(CheckTensorName(t.name, &seen));
    uint64_t nbytes = StDtypeSize(t.dtype);
    bool fits = true;
    for (int64_t d : t.shape)
      fits = fits && d >= 0 && !__builtin_mul_overflow(nbytes, uint64_t(d), &nbytes);
    if (!fits || nbytes != t.bytes.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot serialize tensor '", t.name, "': ", t.bytes.size(), " bytes for ",
                       StDtypeName(t.dtype), " ", ShapeString(t.shape)));
    }
  }
  // Rust's order: larger elements first, so that each tensor starts aligned.
  std::sort(tensors.begin(), tensors.end(), [](const StRawTensor& a, const StRawTensor& b) {
    int ra = Row(a.dtype).rust_rank, rb = Row(b.dtype).rust_rank;
    return ra != rb ? ra > rb : a.name < b.name;
  });
  LM_ASSIGN_OR_RETURN(std::string header, BuildHeader(tensors, metadata));
  uint64_t total = 8 + header.size();
  for (const StRawTensor& t : tensors) {
    if (__builtin_add_overflow(total, t.bytes.size(), &total)) {
      return absl::InvalidArgumentError("safetensors output size overflows");
    }
  }
  std::string out;
  try {
    out.reserve(total);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", total, " bytes for safetensors output: ", e.what()));
  }
  const uint64_t header_len = header.size();
  out.append(reinterpret_cast<const char*>(&header_len), 8);
  out += header;
  for (const StRawTensor& t : tensors) out.append(t.bytes.data(), t.bytes.size());
  return out;
}

}  // namespace llava
