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
#include "common/log.h"
#include "common/status_macros.h"

namespace llava {

// The format stores little-endian numbers; we copy them as host words.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes little-endian");

namespace {

using json = nlohmann::json;

// The torch dtype of each safetensors dtype.
struct ScalarRow {
  StDtype dtype;
  at::ScalarType scalar;
};

constexpr ScalarRow kScalars[] = {
    {StDtype::kBool, at::kBool}, {StDtype::kU8, at::kByte},   {StDtype::kI8, at::kChar},
    {StDtype::kI16, at::kShort}, {StDtype::kF16, at::kHalf},  {StDtype::kBF16, at::kBFloat16},
    {StDtype::kI32, at::kInt},   {StDtype::kF32, at::kFloat}, {StDtype::kF64, at::kDouble},
    {StDtype::kI64, at::kLong},
};

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// "safetensors file F: tensor 'T': what" -- every header error names file and tensor.
// Debian's abseil has its own string_view; the public API speaks std::string_view.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status TensorError(absl::StatusCode code, const std::string& file, std::string_view tensor,
                         absl::string_view what) {
  return absl::Status(
      code, absl::StrCat("safetensors file ", file, ": tensor '", AV(tensor), "': ", what));
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

std::string TorchMessage(const c10::Error& e) { return e.what_without_backtrace(); }

}  // namespace

// ---------------------------------------------------------------------------- dtypes

at::ScalarType StDtypeToScalarType(StDtype dtype) {
  for (const ScalarRow& row : kScalars) {
    if (row.dtype == dtype) return row.scalar;
  }
  LM_CHECK(false) << "unhandled StDtype " << static_cast<int>(dtype);
  return at::kFloat;
}

absl::StatusOr<StDtype> StDtypeFromScalarType(at::ScalarType type) {
  for (const ScalarRow& row : kScalars) {
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
  if (absl::Status s = CheckSafetensorsSize(buffer->size, path); !s.ok()) {
    ::close(fd);
    return s;
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
  LM_ASSIGN_OR_RETURN(
      file->header_, ParseSafetensorsHeader(file->buffer_->data, file->buffer_->size, file->path_));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string bytes, const std::string& source_name) {
  auto buffer = std::make_unique<Buffer>();
  buffer->owned = std::move(bytes);
  // Only now: moving a short string would have moved its characters.
  buffer->data = reinterpret_cast<const uint8_t*>(buffer->owned.data());
  buffer->size = buffer->owned.size();
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(source_name, std::move(buffer)));
  LM_ASSIGN_OR_RETURN(
      file->header_, ParseSafetensorsHeader(file->buffer_->data, file->buffer_->size, file->path_));
  return file;
}

absl::StatusOr<at::Tensor> SafetensorsFile::Load(std::string_view name,
                                                 const LoadOptions& options) const {
  const StTensorInfo* info = Find(name);
  if (info == nullptr) {
    return TensorError(absl::StatusCode::kNotFound, path_, name, "no such tensor in the file");
  }
  const uint8_t* src = buffer_->data + header_.data_start + info->begin;
  const size_t nbytes = info->end - info->begin;
  if (info->dtype == StDtype::kBool) {
    // torch assumes bools are 0 or 1; any other byte is undefined behaviour downstream.
    for (size_t i = 0; i < nbytes; ++i) {
      if (src[i] > 1) {
        return TensorError(
            absl::StatusCode::kDataLoss, path_, name,
            absl::StrCat("BOOL byte ", i, " is ", static_cast<int>(src[i]), ", not 0 or 1"));
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
  out.reserve(header_.tensors.size());
  for (const StTensorInfo& info : header_.tensors) {
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
                                              " holds neither ", kSingleName, " nor ", kIndexName));
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
      return absl::Status(file.status().code(),
                          absl::StrCat(source, ": shard '", shard, "': ", file.status().message()));
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
                       absl::StrCat("has shape ", ShapeString(located.second->shape), ", expected ",
                                    ShapeString(shape)));
  }
  return located.first->Load(name, options);
}

// ---------------------------------------------------------------------------- writing

namespace {

// Contiguous CPU copies of the tensors, and their names and bytes for the writer.
absl::Status PrepareTensors(const std::vector<NamedTensor>& tensors, std::vector<at::Tensor>* cpu,
                            std::vector<StRawTensor>* raw) {
  std::set<std::string_view> seen;
  for (const NamedTensor& nt : tensors) {
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot serialize tensor '", nt.name, "': ", what));
    };
    LM_RETURN_IF_ERROR(CheckTensorName(nt.name, &seen));
    if (!nt.tensor.defined()) return bad("undefined tensor");
    if (nt.tensor.layout() != at::kStrided) return bad("not a dense (strided) tensor");
    auto dtype = StDtypeFromScalarType(nt.tensor.scalar_type());
    if (!dtype.ok()) return bad(dtype.status().message());
    try {
      cpu->push_back(nt.tensor.detach().to(at::kCPU).contiguous());
    } catch (const c10::Error& e) {
      return bad(absl::StrCat("cannot copy to the CPU: ", TorchMessage(e)));
    }
    const at::Tensor& t = cpu->back();
    raw->push_back({nt.name, *dtype, t.sizes().vec(),
                    std::string_view(static_cast<const char*>(t.data_ptr()),
                                     static_cast<size_t>(t.numel()) * StDtypeSize(*dtype))});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<NamedTensor>& tensors, const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> cpu;
  std::vector<StRawTensor> raw;
  cpu.reserve(tensors.size());  // `raw` points into these tensors' storage
  LM_RETURN_IF_ERROR(PrepareTensors(tensors, &cpu, &raw));
  return SerializeSafetensorsBytes(std::move(raw), metadata);
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
