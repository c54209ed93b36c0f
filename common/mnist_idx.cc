#include "common/mnist_idx.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace llava {
namespace {

constexpr size_t kImagesHeaderBytes = 16;  // magic, n, rows, cols
constexpr size_t kLabelsHeaderBytes = 8;   // magic, n

uint32_t ReadBe32(const std::string& data, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data()) + offset;
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

void AppendBe32(std::string* out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(bytes, 4);
}

std::string MagicName(uint32_t magic) {
  if (magic == kIdxImagesMagic) return "IDX images, 0x00000803";
  if (magic == kIdxLabelsMagic) return "IDX labels, 0x00000801";
  return absl::StrFormat("0x%08x", magic);
}

// The file's bytes, decompressed when it is gzip.
absl::StatusOr<std::string> ReadIdxBytes(const std::string& path) {
  absl::StatusOr<std::string> file = ReadFile(path);
  if (!file.ok()) return file.status();
  std::string& data = *file;
  if (data.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty file"));
  if (!IsGzip(data)) {
    if (static_cast<int64_t>(data.size()) > kMaxIdxBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": file is larger than the ", kMaxIdxBytes, "-byte IDX limit"));
    }
    return std::move(data);
  }
  LM_ASSIGN_OR_RETURN(std::string raw, GzipDecompress(data, path));
  if (raw.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": gzip stream decompresses to 0 bytes"));
  }
  return raw;
}

// Checks magic and header length; the caller has the dims.
absl::Status CheckHeader(const std::string& path, const std::string& data, uint32_t magic,
                         size_t header_bytes) {
  if (data.size() < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": truncated IDX header: ", data.size(), " bytes, the magic needs 4"));
  }
  uint32_t got = ReadBe32(data, 0);
  if (got != magic) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": wrong IDX magic ", MagicName(got), ", expected ", MagicName(magic)));
  }
  if (data.size() < header_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated IDX header: ", data.size(),
                                                   " bytes, expected ", header_bytes));
  }
  return absl::OkStatus();
}

// The payload must hold exactly product(dims) bytes.
absl::Status CheckPayload(const std::string& path, const std::string& data, size_t header_bytes,
                          const std::vector<std::pair<const char*, uint32_t>>& dims) {
  int64_t expected = 1;
  std::string shape;
  for (const auto& [name, value] : dims) {
    absl::StrAppend(&shape, shape.empty() ? "" : " x ", name, "=", value);
    if (value == 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": IDX header field '", name, "' is 0"));
    }
  }
  for (const auto& [name, value] : dims) {
    if (__builtin_mul_overflow(expected, static_cast<int64_t>(value), &expected) ||
        expected > kMaxIdxBytes) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": absurd IDX dimensions ", shape,
                                                     ": more than ", kMaxIdxBytes, " bytes"));
    }
  }
  int64_t payload = static_cast<int64_t>(data.size() - header_bytes);
  if (payload < expected) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": payload is ", payload,
                                                   " bytes but the header (", shape, ") says ",
                                                   expected, "; truncated file?"));
  }
  if (payload > expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": payload is ", payload, " bytes but the header (", shape, ") says ",
                     expected, ": ", payload - expected, " trailing bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckDimFits(const std::string& path, const char* field, int64_t value) {
  if (value <= 0 || value > int64_t{UINT32_MAX}) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot write IDX field '", field,
                                                   "' = ", value, " (must be in 1..", UINT32_MAX,
                                                   ")"));
  }
  return absl::OkStatus();
}

absl::Status WriteIdx(const std::string& path, std::string bytes, bool gzip) {
  if (gzip) {
    LM_ASSIGN_OR_RETURN(bytes, GzipCompress(bytes, path));
  }
  return WriteFileAtomic(path, bytes);
}

absl::Status CheckLimit(int64_t limit, int64_t available, const std::string& path) {
  if (limit == -1) return absl::OkStatus();
  if (limit <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit ", limit, " for ", path, ": must be -1 (all) or positive"));
  }
  if (limit > available) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit ", limit, " exceeds the ", available, " samples in ", path));
  }
  return absl::OkStatus();
}

void CheckRange(const MnistSet& set, int64_t begin, int64_t end) {
  LM_CHECK(0 <= begin && begin <= end && end <= set.size())
      << "samples [" << begin << ", " << end << ") of a set of " << set.size();
}

// zlib counts in uInt: hands `zs` the next chunk of `data` once it has used the last.
void FeedInput(const std::string& data, z_stream* zs, size_t* consumed) {
  if (zs->avail_in != 0 || *consumed >= data.size()) return;
  const size_t chunk = std::min<size_t>(data.size() - *consumed, 1u << 30);
  zs->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + *consumed));
  zs->avail_in = static_cast<uInt>(chunk);
  *consumed += chunk;
}

}  // namespace

bool IsGzip(const std::string& data) {
  return data.size() >= 2 && data.compare(0, 2, "\x1f\x8b") == 0;
}

absl::StatusOr<std::string> GzipDecompress(const std::string& data, const std::string& name,
                                           int64_t max_bytes) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  // 16 + MAX_WBITS: gzip wrapper only.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return absl::InternalError(absl::StrCat(name, ": inflateInit2 failed"));
  }
  std::string out;
  char buf[1 << 16];
  size_t consumed = 0;
  absl::Status status;
  while (status.ok()) {
    FeedInput(data, &zs, &consumed);
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (static_cast<int64_t>(out.size()) > max_bytes) {
      status = absl::InvalidArgumentError(
          absl::StrCat(name, ": gzip data decompresses to more than ", max_bytes, " bytes"));
    } else if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0 && consumed == data.size()) break;
      // Another gzip member follows (RFC 1952 allows concatenation).
      inflateReset(&zs);
    } else if (rc == Z_BUF_ERROR ||
               (rc == Z_OK && zs.avail_in == 0 && consumed == data.size() && zs.avail_out != 0)) {
      status = absl::InvalidArgumentError(absl::StrCat(
          name, ": truncated gzip data (stream ends after ", out.size(), " decompressed bytes)"));
    } else if (rc != Z_OK) {
      status = absl::InvalidArgumentError(
          absl::StrCat(name, ": corrupt gzip data: ", zs.msg != nullptr ? zs.msg : zError(rc)));
    }
  }
  inflateEnd(&zs);
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::string> GzipCompress(const std::string& data, const std::string& name) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  // Without deflateSetHeader zlib writes mtime 0, no name, OS = this platform: deterministic.
  if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError(absl::StrCat(name, ": deflateInit2 failed"));
  }
  std::string out;
  char buf[1 << 16];
  size_t consumed = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    FeedInput(data, &zs, &consumed);
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = deflate(&zs, consumed == data.size() ? Z_FINISH : Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      deflateEnd(&zs);
      return absl::InternalError(absl::StrCat(name, ": deflate failed: ", zError(rc)));
    }
  }
  deflateEnd(&zs);
  return out;
}

absl::StatusOr<IdxImages> ReadIdxImages(const std::string& path) {
  LM_ASSIGN_OR_RETURN(std::string data, ReadIdxBytes(path));
  LM_RETURN_IF_ERROR(CheckHeader(path, data, kIdxImagesMagic, kImagesHeaderBytes));
  uint32_t n = ReadBe32(data, 4), rows = ReadBe32(data, 8), cols = ReadBe32(data, 12);
  LM_RETURN_IF_ERROR(
      CheckPayload(path, data, kImagesHeaderBytes, {{"n", n}, {"rows", rows}, {"cols", cols}}));
  IdxImages images;
  images.n = n;
  images.rows = rows;
  images.cols = cols;
  images.pixels.assign(data.begin() + kImagesHeaderBytes, data.end());
  return images;
}

absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path) {
  LM_ASSIGN_OR_RETURN(std::string data, ReadIdxBytes(path));
  LM_RETURN_IF_ERROR(CheckHeader(path, data, kIdxLabelsMagic, kLabelsHeaderBytes));
  uint32_t n = ReadBe32(data, 4);
  LM_RETURN_IF_ERROR(CheckPayload(path, data, kLabelsHeaderBytes, {{"n", n}}));
  return std::vector<uint8_t>(data.begin() + kLabelsHeaderBytes, data.end());
}

absl::StatusOr<MnistSet> LoadMnist(const std::string& images_path, const std::string& labels_path,
                                   int64_t limit) {
  LM_ASSIGN_OR_RETURN(IdxImages images, ReadIdxImages(images_path));
  LM_ASSIGN_OR_RETURN(std::vector<uint8_t> labels, ReadIdxLabels(labels_path));
  if (static_cast<int64_t>(labels.size()) != images.n) {
    return absl::InvalidArgumentError(absl::StrCat("count mismatch: ", images_path, " has ",
                                                   images.n, " images but ", labels_path, " has ",
                                                   labels.size(), " labels"));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= kMnistClasses) {
      return absl::InvalidArgumentError(absl::StrCat(
          labels_path, ": label[", i, "] = ", static_cast<int>(labels[i]), " is not a digit 0..9"));
    }
  }
  LM_RETURN_IF_ERROR(CheckLimit(limit, images.n, images_path));
  int64_t n = limit == -1 ? images.n : limit;
  MnistSet set;
  set.rows = images.rows;
  set.cols = images.cols;
  images.pixels.resize(static_cast<size_t>(n * set.image_size()));
  labels.resize(static_cast<size_t>(n));
  set.pixels = std::move(images.pixels);
  set.labels = std::move(labels);
  return set;
}

absl::StatusOr<std::string> FindMnistFile(const std::string& dir, const std::string& split,
                                          const std::string& kind) {
  if (split != "train" && split != "test") {
    return absl::InvalidArgumentError(
        absl::StrCat("MNIST split '", split, "': expected \"train\" or \"test\""));
  }
  std::string base;
  if (kind == "images") {
    base = absl::StrCat(dir, "/", split, "-images-idx3-ubyte");
  } else if (kind == "labels") {
    base = absl::StrCat(dir, "/", split, "-labels-idx1-ubyte");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("MNIST file kind '", kind, "': expected \"images\" or \"labels\""));
  }
  for (const std::string& candidate : {base + ".gz", base}) {
    if (FileExists(candidate)) return candidate;
  }
  return absl::NotFoundError(absl::StrCat("no MNIST ", split, " ", kind, " in ", dir, ": neither ",
                                          base, ".gz nor ", base,
                                          " exists (run scripts/setup.sh to create data/)"));
}

absl::StatusOr<MnistSet> LoadMnistSplit(const std::string& dir, const std::string& split,
                                        int64_t limit) {
  LM_ASSIGN_OR_RETURN(std::string images, FindMnistFile(dir, split, "images"));
  LM_ASSIGN_OR_RETURN(std::string labels, FindMnistFile(dir, split, "labels"));
  return LoadMnist(images, labels, limit);
}

absl::Status WriteIdxImages(const std::string& path, const IdxImages& images, bool gzip) {
  if (static_cast<int64_t>(images.pixels.size()) != images.n * images.rows * images.cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": cannot write IDX images: ", images.pixels.size(),
        " pixels for n x rows x cols = ", images.n, " x ", images.rows, " x ", images.cols));
  }
  return WriteIdxImages(path, images.pixels.data(), images.n, images.rows, images.cols, gzip);
}

absl::Status WriteIdxImages(const std::string& path, const uint8_t* pixels, int64_t n, int64_t rows,
                            int64_t cols, bool gzip) {
  LM_RETURN_IF_ERROR(CheckDimFits(path, "n", n));
  LM_RETURN_IF_ERROR(CheckDimFits(path, "rows", rows));
  LM_RETURN_IF_ERROR(CheckDimFits(path, "cols", cols));
  int64_t count = 0;
  if (__builtin_mul_overflow(n, rows, &count) || __builtin_mul_overflow(count, cols, &count) ||
      count > kMaxIdxBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot write IDX images: ", n, " x ",
                                                   rows, " x ", cols,
                                                   " exceeds the IDX size limit"));
  }
  std::string bytes;
  bytes.reserve(kImagesHeaderBytes + static_cast<size_t>(count));
  AppendBe32(&bytes, kIdxImagesMagic);
  AppendBe32(&bytes, static_cast<uint32_t>(n));
  AppendBe32(&bytes, static_cast<uint32_t>(rows));
  AppendBe32(&bytes, static_cast<uint32_t>(cols));
  bytes.append(reinterpret_cast<const char*>(pixels), static_cast<size_t>(count));
  return WriteIdx(path, std::move(bytes), gzip);
}

absl::Status WriteIdxLabels(const std::string& path, const std::vector<uint8_t>& labels,
                            bool gzip) {
  LM_RETURN_IF_ERROR(CheckDimFits(path, "n", static_cast<int64_t>(labels.size())));
  std::string bytes;
  AppendBe32(&bytes, kIdxLabelsMagic);
  AppendBe32(&bytes, static_cast<uint32_t>(labels.size()));
  bytes.append(reinterpret_cast<const char*>(labels.data()), labels.size());
  return WriteIdx(path, std::move(bytes), gzip);
}

at::Tensor ImagesToTensor(const MnistSet& set, int64_t begin, int64_t end) {
  CheckRange(set, begin, end);
  if (begin == end) return at::zeros({0, set.image_size()}, at::kFloat);
  // from_blob only views the set's bytes; to(kFloat) makes the owned copy.
  at::Tensor bytes = at::from_blob(const_cast<uint8_t*>(set.image(begin)),
                                   {end - begin, set.image_size()}, at::kByte);
  return bytes.to(at::kFloat).div_(255.0f);  // [N, rows*cols]
}

at::Tensor LabelsToTensor(const MnistSet& set, int64_t begin, int64_t end) {
  CheckRange(set, begin, end);
  if (begin == end) return at::zeros({0}, at::kLong);
  at::Tensor bytes =
      at::from_blob(const_cast<uint8_t*>(set.labels.data() + begin), {end - begin}, at::kByte);
  return bytes.to(at::kLong);  // [N]
}

}  // namespace llava
