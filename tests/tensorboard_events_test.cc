// TensorBoard event files checked independently of the writer: CRC-32C against published
// check values, a bit-at-a-time CRC and TFRecord framing written out here, and Event bytes
// built by hand from the field numbers of TensorBoard's event.proto and summary.proto
// (wall_time 1, step 2, file_version 3, summary 5, session_log 7; Summary.value 1;
// Value.tag 1, simple_value 2; SessionLog.status 1, checkpoint_path 2).
#include "common/tensorboard_events.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "common/file_util.h"
#include "common/run_scalars.h"
#include "protos/tensorboard_event.pb.h"
#include "tests/test_util.h"

namespace llava {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// CRC-32C one bit at a time, straight from the polynomial (no table).
uint32_t BitwiseCrc32c(const std::string& data) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t Masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string Little(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  return out;
}

std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}

std::string Fixed64(double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, 8);
  return Little(bits, 8);
}

std::string Fixed32(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return Little(bits, 4);
}

// Field `number` of wire type 2 (length-delimited).
std::string Bytes(int number, const std::string& payload) {
  return Varint(static_cast<uint64_t>(number) << 3 | 2) + Varint(payload.size()) + payload;
}

std::string OnlyFile(const std::string& dir) {
  std::vector<std::string> names = ListDir(dir);
  EXPECT_EQ(names.size(), 1u) << dir;
  return names.empty() ? "" : dir + "/" + names[0];
}

TEST(Crc32cTest, PublishedCheckValues) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  // RFC 3720 (iSCSI), appendix B.4.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
}

TEST(Crc32cTest, MatchesBitwiseOnRandomData) {
  std::mt19937 rng(7);
  for (int n : {1, 2, 3, 7, 8, 15, 64, 1000}) {
    std::string data(n, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    EXPECT_EQ(Crc32c(data), BitwiseCrc32c(data)) << n;
  }
}

TEST(Crc32cTest, Mask) {
  EXPECT_EQ(MaskCrc(0), 0xa282ead8u);
  EXPECT_EQ(MaskCrc(0xE3069283u), Masked(0xE3069283u));
  // The rotation is by 15 to the right: bit 15 lands in bit 0.
  EXPECT_EQ(MaskCrc(1u << 15), 1u + 0xa282ead8u);
}

TEST(TfRecordTest, FrameLayout) {
  const std::string data = "hello, tensorboard";
  const std::string length = Little(data.size(), 8);
  const std::string expected = length + Little(Masked(BitwiseCrc32c(length)), 4) + data +
                               Little(Masked(BitwiseCrc32c(data)), 4);
  EXPECT_EQ(FrameRecord(data), expected);
  EXPECT_EQ(FrameRecord("").size(), 16u);
}

TEST(TfRecordTest, ReadsBackAndRefusesDamage) {
  const std::string dir = testing::MakeTempDir("tfrecord");
  const std::string path = dir + "/r";
  ASSERT_TRUE(
      WriteFileAtomic(path, FrameRecord("one") + FrameRecord("") + FrameRecord("three")).ok());
  auto records = ReadRecords(path);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(*records, ElementsAre("one", "", "three"));

  std::string bytes = *ReadFile(path);
  std::string damaged = bytes;
  damaged[13] ^= 1;  // the first record's data
  ASSERT_TRUE(WriteFileAtomic(path, damaged).ok());
  EXPECT_THAT(std::string(ReadRecords(path).status().message()),
              HasSubstr("at byte 0: bad data CRC"));
  damaged = bytes;
  damaged[19 + 16] ^= 1;  // the third record's length (it starts at 19 + 16)
  ASSERT_TRUE(WriteFileAtomic(path, damaged).ok());
  EXPECT_THAT(std::string(ReadRecords(path).status().message()),
              HasSubstr("at byte 35: bad length CRC"));
  ASSERT_TRUE(WriteFileAtomic(path, bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(ReadRecords(path).ok());
}

TEST(TbEventWriterTest, EventBytesHaveTensorBoardsFieldNumbers) {
  const std::string dir = testing::MakeTempDir("tb_writer") + "/run";
  auto writer = TbEventWriter::Create(dir);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->WriteScalars(3, 1.5, {{"a", 2.0}, {"train/loss", 0.25}}).ok());
  ASSERT_TRUE((*writer)->WriteRestart(7, 2.5, "job/step-000006").ok());
  const std::string path = (*writer)->path();
  writer->reset();
  EXPECT_THAT(path, StartsWith(dir + "/events.out.tfevents."));
  EXPECT_EQ(OnlyFile(dir), path);

  auto records = ReadRecords(path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  // The first event: wall time and the file version, nothing else.
  tensorboard::Event first;
  ASSERT_TRUE(first.ParseFromString((*records)[0]));
  EXPECT_GT(first.wall_time(), 1.7e9);
  EXPECT_EQ((*records)[0], "\x09" + Fixed64(first.wall_time()) + Bytes(3, "brain.Event:2"));

  const std::string value_a = Bytes(1, "a") + "\x15" + Fixed32(2.0f);
  const std::string value_loss = Bytes(1, "train/loss") + "\x15" + Fixed32(0.25f);
  EXPECT_EQ((*records)[1], "\x09" + Fixed64(1.5) + "\x10" + Varint(3) +
                               Bytes(5, Bytes(1, value_a) + Bytes(1, value_loss)));
  EXPECT_EQ((*records)[2], "\x09" + Fixed64(2.5) + "\x10" + Varint(7) +
                               Bytes(7, std::string("\x08\x01", 2) + Bytes(2, "job/step-000006")));
}

TEST(TbEventWriterTest, EachWriterItsOwnFile) {
  const std::string dir = testing::MakeTempDir("tb_two");
  auto a = TbEventWriter::Create(dir);
  auto b = TbEventWriter::Create(dir);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->path(), (*b)->path());
  EXPECT_EQ(ListDir(dir).size(), 2u);
}

TEST(TbEventWriterTest, UnwritableDirectoryIsAnError) {
  auto w = TbEventWriter::Create("/proc/llava-no-such-dir/tb");
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), HasSubstr("/proc/llava-no-such-dir"));
}

TEST(RunScalarsTest, TrainTags) {
  TrainStepScalars s;
  s.loss = 1.25;
  s.lr = 1e-3;
  s.samples_per_s = 40;
  s.grad_norm = 0.5;
  std::vector<std::string> tags;
  for (const TbScalar& t : TrainScalars(s)) tags.push_back(t.tag);
  EXPECT_THAT(tags, ElementsAre("train/loss", "train/learning_rate", "train/samples_per_second",
                                "train/grad_norm"));
  s.loss_scale = 65536;
  const std::vector<TbScalar> scaled = TrainScalars(s);
  ASSERT_EQ(scaled.size(), 5u);
  EXPECT_EQ(scaled[4].tag, "train/loss_scale");
  EXPECT_EQ(scaled[4].value, 65536);
  EXPECT_EQ(scaled[0].value, 1.25);
}

TEST(RunScalarsTest, EvalTagsPerQuestionAndClass) {
  EvalReport report({"What digit is this?", "Name it."});
  // Digit 3 right under both questions, digit 5 wrong under the second.
  report.Add({0, 0, 3, "The digit is 3.", 3});
  report.Add({0, 1, 3, "The digit is 3.", 3});
  report.Add({1, 0, 5, "The digit is 5.", 5});
  report.Add({1, 1, 5, "The digit is 6.", 6});
  std::map<std::string, double> got;
  for (const TbScalar& t : EvalScalars(report)) got[t.tag] = t.value;
  EXPECT_EQ(got.size(), 1u + 2u + 10u);
  EXPECT_DOUBLE_EQ(got["eval/accuracy"], 0.75);
  EXPECT_DOUBLE_EQ(got["eval/question/What digit is this?"], 1.0);
  EXPECT_DOUBLE_EQ(got["eval/question/Name it."], 0.5);
  EXPECT_DOUBLE_EQ(got["eval/class/3"], 1.0);
  EXPECT_DOUBLE_EQ(got["eval/class/5"], 0.5);
  EXPECT_DOUBLE_EQ(got["eval/class/0"], 0.0);
}

}  // namespace
}  // namespace llava
