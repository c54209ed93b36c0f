// TensorBoard event files: TFRecord framing (each record: uint64 length, masked CRC32C of
// the length, the data, masked CRC32C of the data; little-endian) around Event protobufs
// (protos/tensorboard_event.proto), and a writer of scalar summaries. The file is what
// TensorFlow's EventsWriter makes: `tensorboard --logdir` and its EventAccumulator read it.
//
// One TbEventWriter per file, used from one thread at a time (the coordinator's per-job
// writers are serialized by JobTensorBoard's mutex). Every event is flushed to the kernel
// as it is written, so TensorBoard shows a run while it trains.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace llava {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): "123456789" -> 0xE3069283.
uint32_t Crc32c(absl::string_view data);
// TFRecord's masked CRC: rotate right by 15, add 0xa282ead8 (a CRC stored next to the
// data it covers would otherwise be easy to mistake for data).
uint32_t MaskCrc(uint32_t crc);
// One record: the 12-byte header, the data, the 4-byte footer.
std::string FrameRecord(absl::string_view data);
// Every record's data in a TFRecord file, both CRCs checked; errors name the file and the
// record's byte offset. A truncated last record (a writer that was killed mid-write) is
// an error too.
absl::StatusOr<std::vector<std::string>> ReadRecords(const std::string& path);

struct TbScalar {
  std::string tag;
  double value = 0;  // stored as float32 (Summary.Value.simple_value)
};

// Seconds since the Unix epoch, as Event.wall_time.
double WallTimeNow();

class TbEventWriter {
 public:
  // Creates `dir` if needed and a new file in it, events.out.tfevents.<unix seconds>.
  // <host>.<pid>.<n> (never an existing file: each process and each writer its own), and
  // writes the file_version event ("brain.Event:2").
  static absl::StatusOr<std::unique_ptr<TbEventWriter>> Create(const std::string& dir);
  ~TbEventWriter();
  TbEventWriter(const TbEventWriter&) = delete;
  TbEventWriter& operator=(const TbEventWriter&) = delete;

  // One Event with a Summary holding `scalars` at `step`.
  absl::Status WriteScalars(int64_t step, double wall_time, const std::vector<TbScalar>& scalars);
  // SessionLog START at `step`: the run continues from a checkpoint taken before `step`,
  // and TensorBoard drops what this run's files held for steps >= `step`.
  absl::Status WriteRestart(int64_t step, double wall_time, const std::string& checkpoint);
  const std::string& path() const { return path_; }

 private:
  TbEventWriter(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  absl::Status WriteEvent(const std::string& serialized);
  std::string path_;
  std::FILE* file_;
};

}  // namespace llava
