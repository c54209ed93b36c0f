#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
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
  at::ScalarType scalar;
  // Position in the Rust Dtype enum (declared in increasing alignment); the writer puts
  // higher ranks first, as Rust's serializer does.
  int rust_rank;
};

constexpr DtypeRow kDtypes[] = {
    {StDtype::kBool, "BOOL", 1, at::kBool, 0},   {StDtype::kU8, "U8", 1, at::kByte, 1},
    {StDtype::kI8, "I8", 1, at::kChar, 2},       {StDtype::kI16, "I16", 2, at::kShort, 3},
    {StDtype::kF16, "F16", 2, at::kHalf, 4},     {StDtype::kBF16, "BF16", 2, at::kBFloat16, 5},
    {StDtype::kI32, "I32", 4, at::kInt, 6},      {StDtype::kF32, "F32", 4, at::kFloat, 7},
    {StDtype::kF64, "F64", 8, at::kDouble, 8},   {StDtype::kI64, "I64", 8, at::kLong, 9},
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
// Debian's abseil has its own string_view; the public API speaks std::string_view.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status TensorError(absl::StatusCode code, const std::string& file, std::string_view tensor,
                         absl::string_view what) {
  return absl::Status(code,
                      absl::StrCat("safetensors file ", file, ": tensor '", AV(tensor), "': ", what));
}

absl::Status FileError(absl::StatusCode code, const std::string& file, absl::string_view what) {
  return absl::Status(code, absl::StrCat("safetensors file ", file, ": ", what));
}

absl::Status ErrnoError(const char* what, const std::string& path, int err) {
  std::string msg = absl::StrCat("cannot ", what, " safetensors file ", path, ": ", strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

// Parses JSON, rejecting duplicate keys in any object: nlohmann keeps the last one
// silently, which would let two tensors claim one name. Errors name `source`.
absl::StatusOr<json> ParseJsonNoDuplicates(const char* begin, const char* end,
                                           const std::string& source) {
  struct Frame {
    std::string owner;  // key whose value is this object ("" at the top)
    std::set<std::string> keys;
    std::string last_key;
  };
  if (auto at = JsonNestingExceeds(std::string_view(begin, end - begin))) {
    return absl::DataLossError(absl::StrCat(source, ": JSON nested deeper than ", kMaxJsonDepth,
                                            " levels at byte ", *at));
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
    if (!JsonToInt64(d, &dim)) return bad(absl::StrCat("shape entry ", d.dump(), " is not an integer"));
    if (dim < 0) return bad(absl::StrCat("negative dimension ", dim, " in shape ", shape_it->dump()));
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
      return TensorError(absl::StatusCode::kDataLoss, file, cur.name,
                         absl::StrCat("data_offsets [", cur.begin, ", ", cur.end,
                                      "] overlap tensor '", prev.name, "' at [", prev.begin,
                                      ", ", prev.end, "]"));
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

std::string TorchMessage(const c10::Error& e) { return e.what_without_backtrace(); }

}  // namespace

// ---------------------------------------------------------------------------- dtypes

const char* StDtypeName(StDtype dtype) { return Row(dtype).name; }
size_t StDtypeSize(StDtype dtype) { return Row(dtype).size; }
at::ScalarType StDtypeToScalarType(StDtype dtype) { return Row(dtype).scalar; }

std::optional<StDtype> StDtypeFromName(std::string_view name) {
  for (const DtypeRow& row : kDtypes) {
    if (name == row.name) return row.dtype;
  }
  return std::nullopt;
}

absl::StatusOr<StDtype> StDtypeFromScalarType(at::ScalarType type) {
  for (const DtypeRow& row : kDtypes) {
    if (row.scalar == type) return row.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("torch dtype ", c10::toString(type), " cannot be stored in safetensors"));
}

// ---------------------------------------------------------------------------- file

struct SafetensorsFile::Buffer {
  const uint8_t* data = nullptr;
  size_t size = 0;
  void* map = nullptr;  // set when data is an mmap of `size` bytes
  std::string owned;    // set for FromBytes

  ~Buffer() {
    if (map != nullptr) ::munmap(map, size);
  }
};

SafetensorsFile::SafetensorsFile(std::string path, std::unique_ptr<Buffer> buffer)
    : path_(std::move(path)), buffer_(std::move(buffer)) {}

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError("stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return FileError(absl::StatusCode::kInvalidArgument, path, "not a regular file");
  }
  auto buffer = std::make_unique<Buffer>();
  buffer->size = static_cast<size_t>(st.st_size);
  if (buffer->size < 8) {
    ::close(fd);
    return FileError(absl::StatusCode::kDataLoss, path,
                     absl::StrCat("file is ", buffer->size,
                                  " bytes, shorter than the 8-byte header length"));
  }
  // A private read-only map: pages come from the page cache and are never copied into
  // anonymous memory, so a 16 GB checkpoint costs no RAM beyond what Load touches.
  void* map = ::mmap(nullptr, buffer->size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) return ErrnoError("mmap", path, map_err);
  ::madvise(map, buffer->size, MADV_SEQUENTIAL);
  buffer->map = map;
  buffer->data = static_cast<const uint8_t*>(map);
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path, std::move(buffer)));
  LM_RETURN_IF_ERROR(file->ParseHeader());
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string bytes, const std::string& source_name) {
  auto buffer = std::make_unique<Buffer>();
  buffer->owned = std::move(bytes);
  // Only now: moving a short string would have moved its characters.
  buffer->data = reinterpret_cast<const uint8_t*>(buffer->owned.data());
  buffer->size = buffer->owned.size();
  if (buffer->size < 8) {
    return FileError(absl::StatusCode::kDataLoss, source_name,
                     absl::StrCat("file is ", buffer->size,
                                  " bytes, shorter than the 8-byte header length"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(source_name, std::move(buffer)));
  LM_RETURN_IF_ERROR(file->ParseHeader());
  return file;
}

absl::Status SafetensorsFile::ParseHeader() {
  const uint8_t* base = buffer_->data;
  const uint64_t size = buffer_->size;
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);
  if (header_len > kMaxHeaderBytes) {
    return FileError(absl::StatusCode::kDataLoss, path_,
                     absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                  kMaxHeaderBytes, " bytes"));
  }
  if (header_len > size - 8) {
    return FileError(absl::StatusCode::kDataLoss, path_,
                     absl::StrCat("header length ", header_len, " runs past the end of the ",
                                  size, "-byte file"));
  }
  data_start_ = 8 + header_len;
  const uint64_t data_size = size - data_start_;
  const char* text = reinterpret_cast<const char*>(base + 8);
  LM_ASSIGN_OR_RETURN(json header,
                      ParseJsonNoDuplicates(text, text + header_len,
                                            absl::StrCat("safetensors file ", path_, ": header")));
  if (!header.is_object()) {
    return FileError(absl::StatusCode::kDataLoss, path_, "header is not a JSON object");
  }
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      LM_RETURN_IF_ERROR(ParseMetadata(path_, it.value(), &metadata_));
      continue;
    }
    LM_ASSIGN_OR_RETURN(StTensorInfo info, ParseEntry(path_, it.key(), it.value(), data_size));
    tensors_.push_back(std::move(info));
  }
  std::sort(tensors_.begin(), tensors_.end(),
            [](const StTensorInfo& a, const StTensorInfo& b) { return a.name < b.name; });
  return CheckNoOverlap(path_, tensors_);
}

const StTensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const StTensorInfo& t, std::string_view n) { return t.name < n; });
  return (it != tensors_.end() && it->name == name) ? &*it : nullptr;
}

absl::StatusOr<at::Tensor> SafetensorsFile::Load(std::string_view name,
                                                 const LoadOptions& options) const {
  const StTensorInfo* info = Find(name);
  if (info == nullptr) {
    return TensorError(absl::StatusCode::kNotFound, path_, name, "no such tensor in the file");
  }
  const uint8_t* src = buffer_->data + data_start_ + info->begin;
  const size_t nbytes = info->end - info->begin;
  if (info->dtype == StDtype::kBool) {
    // torch assumes bools are 0 or 1; any other byte is undefined behaviour downstream.
    for (size_t i = 0; i < nbytes; ++i) {
      if (src[i] > 1) {
        return TensorError(absl::StatusCode::kDataLoss, path_, name,
                           absl::StrCat("BOOL byte ", i, " is ", static_cast<int>(src[i]),
                                        ", not 0 or 1"));
      }
    }
  }
  const at::ScalarType stored = StDtypeToScalarType(info->dtype);
  const at::ScalarType target = options.dtype.value_or(stored);
  try {
    // [shape] in the stored dtype on the CPU; aliases the buffer when `aliased`.
    at::Tensor host;
    bool aliased = false;
    const auto stored_opts = at::TensorOptions().dtype(stored);
    if (nbytes > 0 && reinterpret_cast<uintptr_t>(src) % StDtypeSize(info->dtype) == 0) {
      // Never written through: every path below copies out of it.
      host = at::from_blob(const_cast<uint8_t*>(src), info->shape, stored_opts);
      aliased = true;
    } else {
      // Misaligned (a foreign writer's unpadded header) or empty: a typed view of these
      // bytes would be undefined behaviour, so copy them as bytes.
      host = at::empty(info->shape, stored_opts);
      if (nbytes > 0) std::memcpy(host.data_ptr(), src, nbytes);
    }
    if (options.device.is_cpu()) {
      if (!aliased && target == stored) return host;
      return at::empty(info->shape, at::TensorOptions().dtype(target)).copy_(host);
    }
    // Move the stored (often half-size) bytes, convert on the device.
    at::Tensor dev = at::empty(info->shape, stored_opts.device(options.device));
    dev.copy_(host);
    return target == stored ? dev : dev.to(target);
  } catch (const c10::Error& e) {
    return TensorError(absl::StatusCode::kInvalidArgument, path_, name,
                       absl::StrCat("cannot load as ", c10::toString(target), " on ",
                                    options.device.str(), ": ", TorchMessage(e)));
  } catch (const std::exception& e) {
    return TensorError(absl::StatusCode::kResourceExhausted, path_, name,
                       absl::StrCat("cannot load: ", e.what()));
  }
}

absl::StatusOr<std::vector<NamedTensor>> SafetensorsFile::LoadAll(
    const LoadOptions& options) const {
  std::vector<NamedTensor> out;
  out.reserve(tensors_.size());
  for (const StTensorInfo& info : tensors_) {
    LM_ASSIGN_OR_RETURN(at::Tensor t, Load(info.name, options));
    out.push_back({info.name, std::move(t)});
  }
  return out;
}

// ---------------------------------------------------------------------------- checkpoint

namespace {

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Shard names come from a file we did not write: keep them inside the checkpoint.
bool IsSafeShardName(const std::string& shard) {
  if (shard.empty() || shard.front() == '/') return false;
  for (const auto& part : std::filesystem::path(shard)) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir_or_file) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->path_ = dir_or_file;
  if (IsDirectory(dir_or_file)) {
    // Transformers prefers the single file when both exist; so do we.
    std::string single = absl::StrCat(dir_or_file, "/", kSingleName);
    std::string index = absl::StrCat(dir_or_file, "/", kIndexName);
    if (FileExists(single)) {
      LM_RETURN_IF_ERROR(ckpt->OpenSingle(single));
    } else if (FileExists(index)) {
      LM_RETURN_IF_ERROR(ckpt->OpenSharded(index));
    } else {
      return absl::NotFoundError(absl::StrCat("checkpoint directory ", dir_or_file,
                                              " holds neither ", kSingleName, " nor ",
                                              kIndexName));
    }
  } else if (!FileExists(dir_or_file)) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", dir_or_file, " does not exist"));
  } else if (EndsWith(dir_or_file, ".json")) {
    LM_RETURN_IF_ERROR(ckpt->OpenSharded(dir_or_file));
  } else {
    LM_RETURN_IF_ERROR(ckpt->OpenSingle(dir_or_file));
  }
  return ckpt;
}

absl::Status Checkpoint::OpenSingle(const std::string& file) {
  LM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open(file));
  for (const StTensorInfo& info : f->tensors()) where_.emplace(info.name, 0);
  metadata_ = f->metadata();
  files_.push_back(std::move(f));
  return absl::OkStatus();
}

absl::Status Checkpoint::OpenSharded(const std::string& index_file) {
  LM_ASSIGN_OR_RETURN(std::string text, ReadFile(index_file));
  const std::string source = absl::StrCat("checkpoint index ", index_file);
  LM_ASSIGN_OR_RETURN(json index,
                      ParseJsonNoDuplicates(text.data(), text.data() + text.size(), source));
  if (!index.is_object()) return absl::DataLossError(absl::StrCat(source, ": not a JSON object"));
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return absl::DataLossError(absl::StrCat(source, ": missing \"weight_map\" object"));
  }
  // tensor -> shard, and the shards in file-name order.
  std::map<std::string, std::string> shard_of;
  std::map<std::string, size_t> shard_slot;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it->is_string() || !IsSafeShardName(it->get<std::string>())) {
      return absl::DataLossError(absl::StrCat(source, ": weight_map entry for tensor '", it.key(),
                                              "' is not a shard file name: ", it->dump()));
    }
    shard_of[it.key()] = it->get<std::string>();
    shard_slot.emplace(it->get<std::string>(), 0);
  }
  const std::string dir = std::filesystem::path(index_file).parent_path().string();
  for (auto& [shard, slot] : shard_slot) {
    std::string shard_path = dir.empty() ? shard : absl::StrCat(dir, "/", shard);
    auto file = SafetensorsFile::Open(shard_path);
    if (!file.ok()) {
      return absl::Status(file.status().code(), absl::StrCat(source, ": shard '", shard,
                                                             "': ", file.status().message()));
    }
    slot = files_.size();
    for (const auto& [key, value] : (*file)->metadata()) metadata_.emplace(key, value);
    files_.push_back(*std::move(file));
  }
  for (const auto& [tensor, shard] : shard_of) {
    size_t slot = shard_slot.at(shard);
    if (files_[slot]->Find(tensor) == nullptr) {
      return absl::DataLossError(absl::StrCat(source, ": tensor '", tensor,
                                              "' is listed in shard '", shard, "' but ",
                                              files_[slot]->path(), " does not contain it"));
    }
    where_.emplace(tensor, slot);
  }
  return absl::OkStatus();
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& entry : where_) out.push_back(entry.first);
  return out;
}

bool Checkpoint::Contains(std::string_view name) const { return where_.find(name) != where_.end(); }

absl::StatusOr<std::pair<const SafetensorsFile*, const StTensorInfo*>> Checkpoint::Locate(
    std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", path_, ": tensor '", AV(name), "' not found"));
  }
  const SafetensorsFile* file = files_[it->second].get();
  return std::make_pair(file, file->Find(name));
}

absl::StatusOr<std::vector<int64_t>> Checkpoint::Shape(std::string_view name) const {
  LM_ASSIGN_OR_RETURN(auto located, Locate(name));
  return located.second->shape;
}

absl::StatusOr<at::Tensor> Checkpoint::Load(std::string_view name,
                                            const LoadOptions& options) const {
  LM_ASSIGN_OR_RETURN(auto located, Locate(name));
  return located.first->Load(name, options);
}

absl::StatusOr<at::Tensor> Checkpoint::LoadWithShape(std::string_view name,
                                                     const std::vector<int64_t>& shape,
                                                     const LoadOptions& options) const {
  LM_ASSIGN_OR_RETURN(auto located, Locate(name));
  // Checked before reading so a wrong model config fails fast, without a large copy.
  if (located.second->shape != shape) {
    return TensorError(absl::StatusCode::kInvalidArgument, located.first->path(), name,
                       absl::StrCat("has shape ", ShapeString(located.second->shape),
                                    ", expected ", ShapeString(shape)));
  }
  return located.first->Load(name, options);
}

// ---------------------------------------------------------------------------- writing

namespace {

struct PreparedTensor {
  const std::string* name;
  StDtype dtype;
  at::Tensor cpu;  // contiguous, CPU
  uint64_t nbytes;
};

absl::StatusOr<std::vector<PreparedTensor>> PrepareTensors(const std::vector<NamedTensor>& tensors) {
  std::vector<PreparedTensor> out;
  std::set<std::string_view> seen;
  for (const NamedTensor& nt : tensors) {
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot serialize tensor '", nt.name, "': ", what));
    };
    if (nt.name.empty()) return bad("empty name");
    if (nt.name == kMetadataKey) return bad("the name is reserved for metadata");
    if (!seen.insert(nt.name).second) return bad("duplicate name");
    if (!nt.tensor.defined()) return bad("undefined tensor");
    if (nt.tensor.layout() != at::kStrided) return bad("not a dense (strided) tensor");
    auto dtype = StDtypeFromScalarType(nt.tensor.scalar_type());
    if (!dtype.ok()) return bad(dtype.status().message());
    PreparedTensor p{&nt.name, *dtype, at::Tensor(), 0};
    try {
      p.cpu = nt.tensor.detach().to(at::kCPU).contiguous();
    } catch (const c10::Error& e) {
      return bad(absl::StrCat("cannot copy to the CPU: ", TorchMessage(e)));
    }
    p.nbytes = static_cast<uint64_t>(p.cpu.numel()) * StDtypeSize(p.dtype);
    out.push_back(std::move(p));
  }
  // Rust's order: larger elements first, so that each tensor starts aligned.
  std::sort(out.begin(), out.end(), [](const PreparedTensor& a, const PreparedTensor& b) {
    int ra = Row(a.dtype).rust_rank, rb = Row(b.dtype).rust_rank;
    return ra != rb ? ra > rb : *a.name < *b.name;
  });
  return out;
}

absl::StatusOr<std::string> BuildHeader(const std::vector<PreparedTensor>& tensors,
                                        const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  try {
    if (!metadata.empty()) absl::StrAppend(&header, "\"", kMetadataKey, "\":", json(metadata).dump());
    uint64_t offset = 0;
    for (const PreparedTensor& t : tensors) {
      if (header.size() > 1) header += ',';
      absl::StrAppend(&header, json(*t.name).dump(), ":{\"dtype\":\"", StDtypeName(t.dtype),
                      "\",\"shape\":[", absl::StrJoin(t.cpu.sizes(), ","),
                      "],\"data_offsets\":[", offset, ",", offset + t.nbytes, "]}");
      offset += t.nbytes;
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

absl::StatusOr<std::string> SerializeSafetensors(const std::vector<NamedTensor>& tensors,
                                                 const std::map<std::string, std::string>& metadata) {
  LM_ASSIGN_OR_RETURN(std::vector<PreparedTensor> prepared, PrepareTensors(tensors));
  LM_ASSIGN_OR_RETURN(std::string header, BuildHeader(prepared, metadata));
  uint64_t total = 8 + header.size();
  for (const PreparedTensor& t : prepared) {
    if (__builtin_add_overflow(total, t.nbytes, &total)) {
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
  for (const PreparedTensor& t : prepared) {
    if (t.nbytes > 0) out.append(static_cast<const char*>(t.cpu.data_ptr()), t.nbytes);
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  auto bytes = SerializeSafetensors(tensors, metadata);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("writing ", path, ": ", bytes.status().message()));
  }
  return WriteFileAtomic(path, *bytes);
}

}  // namespace llava
