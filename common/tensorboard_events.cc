#include "common/tensorboard_events.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "protos/tensorboard_event.pb.h"

namespace llava {
namespace {

constexpr uint32_t kCastagnoli = 0x82F63B78;  // reflected

std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCastagnoli : c >> 1;
    table[i] = c;
  }
  return table;
}

void PutLittle(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetLittle(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::string HostName() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

uint32_t Crc32c(absl::string_view data) {
  static const std::array<uint32_t, 256> table = MakeTable();
  uint32_t c = 0xffffffffu;
  for (unsigned char b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string FrameRecord(absl::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  PutLittle(data.size(), 8, &out);
  PutLittle(MaskCrc(Crc32c(out)), 4, &out);
  out.append(data.data(), data.size());
  PutLittle(MaskCrc(Crc32c(data)), 4, &out);
  return out;
}

absl::StatusOr<std::vector<std::string>> ReadRecords(const std::string& path) {
  LM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  std::vector<std::string> records;
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) {
      return absl::DataLossError(
          absl::StrCat(path, ": record at byte ", at, " is cut short in its header"));
    }
    const absl::string_view header(bytes.data() + at, 8);
    if (GetLittle(bytes.data() + at + 8, 4) != MaskCrc(Crc32c(header))) {
      return absl::DataLossError(absl::StrCat(path, ": record at byte ", at, ": bad length CRC"));
    }
    const uint64_t length = GetLittle(bytes.data() + at, 8);
    if (length > bytes.size() - at - 12 || bytes.size() - at - 12 - length < 4) {
      return absl::DataLossError(absl::StrCat(path, ": record at byte ", at, " claims ", length,
                                              " bytes, past the end of the file"));
    }
    const absl::string_view data(bytes.data() + at + 12, length);
    if (GetLittle(bytes.data() + at + 12 + length, 4) != MaskCrc(Crc32c(data))) {
      return absl::DataLossError(absl::StrCat(path, ": record at byte ", at, ": bad data CRC"));
    }
    records.emplace_back(data);
    at += 16 + length;
  }
  return records;
}

double WallTimeNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

absl::StatusOr<std::unique_ptr<TbEventWriter>> TbEventWriter::Create(const std::string& dir) {
  static std::atomic<int64_t> counter{0};
  LM_RETURN_IF_ERROR(MakeDirs(dir));
  const double now = WallTimeNow();
  std::string path;
  std::FILE* file = nullptr;
  // "x": never opens an existing file (another process's, or one from the same second).
  for (int tries = 0; tries < 100 && file == nullptr; ++tries) {
    path = absl::StrCat(dir, "/events.out.tfevents.", static_cast<int64_t>(now), ".", HostName(),
                        ".", getpid(), ".", counter.fetch_add(1));
    file = std::fopen(path.c_str(), "wbx");
    if (file == nullptr && errno != EEXIST) {
      return absl::InternalError(absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
    }
  }
  if (file == nullptr) return absl::InternalError(absl::StrCat(dir, ": no free events file name"));
  std::unique_ptr<TbEventWriter> writer(new TbEventWriter(path, file));
  tensorboard::Event event;
  event.set_wall_time(now);
  event.set_file_version("brain.Event:2");
  LM_RETURN_IF_ERROR(writer->WriteEvent(event.SerializeAsString()));
  return writer;
}

TbEventWriter::~TbEventWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::Status TbEventWriter::WriteEvent(const std::string& serialized) {
  const std::string record = FrameRecord(serialized);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fflush(file_) != 0) {
    return absl::InternalError(absl::StrCat(path_, ": cannot write: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status TbEventWriter::WriteScalars(int64_t step, double wall_time,
                                         const std::vector<TbScalar>& scalars) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tensorboard::Summary* summary = event.mutable_summary();
  for (const TbScalar& s : scalars) {
    tensorboard::Summary::Value* v = summary->add_value();
    v->set_tag(s.tag);
    v->set_simple_value(static_cast<float>(s.value));
  }
  return WriteEvent(event.SerializeAsString());
}

absl::Status TbEventWriter::WriteRestart(int64_t step, double wall_time,
                                         const std::string& checkpoint) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  event.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  event.mutable_session_log()->set_checkpoint_path(checkpoint);
  return WriteEvent(event.SerializeAsString());
}

}  // namespace llava
