#include "common/png_image.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/mnist_idx.h"
#include "tests/test_util.h"
#include "tests/status_matchers.h"

namespace llava {
namespace {

using ::llava::testing::IsOk;
using ::llava::testing::StatusIs;

using ::testing::HasSubstr;

// A PNG in any libpng format, written with libpng's low-level API so the tests control
// bit depth, color type, palette, tRNS and interlacing independently of WritePngGray.
struct RawPng {
  uint32_t width = 0, height = 0;
  int bit_depth = 8;
  int color_type = PNG_COLOR_TYPE_GRAY;
  bool interlaced = false;
  std::vector<std::vector<uint8_t>> rows;  // packed as the PNG stores them
  std::vector<png_color> palette;
  std::vector<uint8_t> palette_alpha;  // tRNS for palette images
};

bool WriteRawPng(const std::string& path, const RawPng& image) {
  FILE* fp = std::fopen(path.c_str(), "wb");
  if (fp == nullptr) return false;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep> rows;
  for (const auto& r : image.rows) rows.push_back(const_cast<png_bytep>(r.data()));
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(fp);
    return false;
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, image.width, image.height, image.bit_depth, image.color_type,
               image.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!image.palette.empty()) {
    png_set_PLTE(png, info, image.palette.data(), static_cast<int>(image.palette.size()));
  }
  if (!image.palette_alpha.empty()) {
    png_set_tRNS(png, info, image.palette_alpha.data(),
                 static_cast<int>(image.palette_alpha.size()), nullptr);
  }
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return std::fclose(fp) == 0;
}

std::vector<uint8_t> Be16Row(const std::vector<uint16_t>& values) {
  std::vector<uint8_t> row;
  for (uint16_t v : values) {
    row.push_back(static_cast<uint8_t>(v >> 8));
    row.push_back(static_cast<uint8_t>(v & 0xff));
  }
  return row;
}

GrayImage Filled(int64_t w, int64_t h, uint8_t value) {
  return GrayImage{w, h, std::vector<uint8_t>(static_cast<size_t>(w * h), value)};
}

void FillRect(GrayImage* image, int64_t x0, int64_t y0, int64_t x1, int64_t y1, uint8_t v) {
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t x = x0; x < x1; ++x) image->pixels[y * image->width + x] = v;
  }
}

double MeanAbsDiff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  EXPECT_EQ(a.size(), b.size());
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::abs(int{a[i]} - int{b[i]});
  return sum / static_cast<double>(a.size());
}

int MaxAbsDiff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int most = 0;
  for (size_t i = 0; i < a.size(); ++i) most = std::max(most, std::abs(int{a[i]} - int{b[i]}));
  return most;
}

GrayImage Digit(const MnistSet& set, int64_t i) {
  return GrayImage{28, 28, std::vector<uint8_t>(set.image(i), set.image(i) + 784)};
}

// The first digits of the real test set; fails (does not skip) without the data.
MnistSet TestDigits(int64_t n) {
  const std::string dir = testing::SourceDir() + "/data/mnist";
  auto set = LoadMnistSplit(dir, "test", n);
  EXPECT_TRUE(set.ok()) << set.status() << "\nMNIST data missing in " << dir
                        << ": run scripts/setup.sh (it runs scripts/prepare_data.mjs)";
  return set.ok() ? *std::move(set) : MnistSet{};
}

class PngImageTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("png_image"); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  GrayImage ReadOk(const std::string& path) const {
    auto got = ReadPngGray(path);
    EXPECT_THAT(got, IsOk());
    return got.ok() ? *got : GrayImage{};
  }
  std::string ReadError(const std::string& path) const {
    auto got = ReadPngGray(path);
    EXPECT_FALSE(got.ok()) << path;
    if (got.ok()) return "";
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(path));
    return std::string(got.status().message());
  }
  std::string dir_;
};

// ---- decoding every PNG flavour to gray ------------------------------------------------

TEST_F(PngImageTest, GrayRoundTripIsExactAndDeterministic) {
  GrayImage image{5, 3, {}};
  for (int i = 0; i < 15; ++i) image.pixels.push_back(static_cast<uint8_t>(i * 17));
  ASSERT_THAT(WritePngGray(Path("g.png"), image), IsOk());
  GrayImage back = ReadOk(Path("g.png"));
  EXPECT_EQ(back.width, 5);
  EXPECT_EQ(back.height, 3);
  EXPECT_EQ(back.pixels, image.pixels);
  auto a = EncodePngGray(image, "a");
  auto b = EncodePngGray(image, "b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  auto file = ReadFile(Path("g.png"));
  ASSERT_THAT(file, IsOk());
  EXPECT_EQ(*file, *a);
  auto decoded = DecodePngGray(*a, "memory");
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->pixels, image.pixels);
}

TEST_F(PngImageTest, PaletteWithTransparency) {
  RawPng png;
  png.width = 4;
  png.height = 1;
  png.bit_depth = 2;
  png.color_type = PNG_COLOR_TYPE_PALETTE;
  png.palette = {{0, 0, 0}, {255, 255, 255}, {255, 0, 0}, {0, 0, 0}};
  png.palette_alpha = {255, 255, 255, 0};  // entry 3: fully transparent
  png.rows = {{0x1b}};                     // indices 0 1 2 3, 2 bits each
  ASSERT_TRUE(WriteRawPng(Path("p.png"), png));
  GrayImage got = ReadOk(Path("p.png"));
  ASSERT_EQ(got.width, 4);
  // red: (299 * 255 + 500) / 1000 = 76; transparent: over white = 255.
  EXPECT_EQ(got.pixels, (std::vector<uint8_t>{0, 255, 76, 255}));
}

TEST_F(PngImageTest, SixteenBitGrayAndRgba) {
  RawPng gray;
  gray.width = 3;
  gray.height = 1;
  gray.bit_depth = 16;
  gray.color_type = PNG_COLOR_TYPE_GRAY;
  gray.rows = {Be16Row({0, 65535, 0x8080})};
  ASSERT_TRUE(WriteRawPng(Path("g16.png"), gray));
  // 0x8080 / 257 = 128 exactly.
  EXPECT_EQ(ReadOk(Path("g16.png")).pixels, (std::vector<uint8_t>{0, 255, 128}));

  RawPng rgba;
  rgba.width = 3;
  rgba.height = 1;
  rgba.bit_depth = 16;
  rgba.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
  rgba.rows = {Be16Row({65535, 0, 0, 65535, 0, 0, 0, 0, 0, 0, 0, 0x8080})};
  ASSERT_TRUE(WriteRawPng(Path("rgba16.png"), rgba));
  // opaque red = 76; transparent = white; black at alpha 128/255 over white:
  // (255 * 127 + 127) / 255 = 127.
  EXPECT_EQ(ReadOk(Path("rgba16.png")).pixels, (std::vector<uint8_t>{76, 255, 127}));
}

TEST_F(PngImageTest, LowBitGrayAndGrayAlpha) {
  RawPng bits;
  bits.width = 10;
  bits.height = 1;
  bits.bit_depth = 1;
  bits.rows = {{0x6a, 0x40}};  // 0110 1010 01
  ASSERT_TRUE(WriteRawPng(Path("g1.png"), bits));
  EXPECT_EQ(ReadOk(Path("g1.png")).pixels,
            (std::vector<uint8_t>{0, 255, 255, 0, 255, 0, 255, 0, 0, 255}));

  RawPng ga;
  ga.width = 3;
  ga.height = 1;
  ga.color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
  ga.rows = {{200, 255, 0, 0, 0, 51}};
  ASSERT_TRUE(WriteRawPng(Path("ga.png"), ga));
  // 0 at alpha 51 over white: 255 * 204 / 255 = 204.
  EXPECT_EQ(ReadOk(Path("ga.png")).pixels, (std::vector<uint8_t>{200, 255, 204}));
}

TEST_F(PngImageTest, InterlacedRgbMatchesPlainAndLumaFormula) {
  RawPng plain;
  plain.width = 37;
  plain.height = 23;
  plain.color_type = PNG_COLOR_TYPE_RGB;
  uint32_t state = 12345;
  for (uint32_t y = 0; y < plain.height; ++y) {
    std::vector<uint8_t> row;
    for (uint32_t i = 0; i < plain.width * 3; ++i) {
      state = state * 1103515245u + 12345u;
      row.push_back(static_cast<uint8_t>(state >> 24));
    }
    plain.rows.push_back(row);
  }
  RawPng interlaced = plain;
  interlaced.interlaced = true;
  ASSERT_TRUE(WriteRawPng(Path("plain.png"), plain));
  ASSERT_TRUE(WriteRawPng(Path("adam7.png"), interlaced));
  GrayImage a = ReadOk(Path("plain.png"));
  GrayImage b = ReadOk(Path("adam7.png"));
  EXPECT_EQ(a.pixels, b.pixels);
  ASSERT_EQ(a.pixels.size(), 37u * 23u);
  for (uint32_t y : {0u, 11u, 22u}) {
    for (uint32_t x : {0u, 17u, 36u}) {
      const uint8_t* p = &plain.rows[y][x * 3];
      const int luma = static_cast<int>(std::lround(0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
      EXPECT_NEAR(a.at(x, y), luma, 1) << x << "," << y;
    }
  }
}

// ---- errors ------------------------------------------------------------------------------

TEST_F(PngImageTest, TruncatedPng) {
  GrayImage image = Filled(40, 40, 9);
  image.pixels[7] = 200;
  auto bytes = EncodePngGray(image, "x");
  ASSERT_THAT(bytes, IsOk());
  for (size_t keep : {size_t{12}, size_t{40}, bytes->size() / 2, bytes->size() - 5}) {
    const std::string path = Path("cut" + std::to_string(keep) + ".png");
    ASSERT_THAT(WriteFileAtomic(path, bytes->substr(0, keep)), IsOk());
    std::string msg = ReadError(path);
    EXPECT_THAT(msg, HasSubstr("invalid PNG")) << keep;
    EXPECT_THAT(msg, HasSubstr("truncated")) << keep;
  }
}

TEST_F(PngImageTest, NotAPng) {
  ASSERT_THAT(WriteFileAtomic(Path("digit.png"), "this is a text file, not an image\n"), IsOk());
  EXPECT_THAT(ReadError(Path("digit.png")), HasSubstr("not a PNG file"));
  ASSERT_THAT(WriteFileAtomic(Path("empty.png"), ""), IsOk());
  EXPECT_THAT(ReadError(Path("empty.png")), HasSubstr("empty file"));
  auto missing = ReadPngGray(Path("missing.png"));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("missing.png"))));
  auto as_mnist = LoadPngAsMnist(Path("digit.png"));
  ASSERT_FALSE(as_mnist.ok());
  EXPECT_THAT(std::string(as_mnist.status().message()), HasSubstr(Path("digit.png")));
}

TEST_F(PngImageTest, CorruptChunksAndHugeDimensions) {
  auto bytes = EncodePngGray(Filled(8, 8, 100), "x");
  ASSERT_THAT(bytes, IsOk());
  // IHDR data starts at byte 16 (8 signature + 4 length + 4 type); its CRC follows.
  std::string bad_crc = *bytes;
  bad_crc[29] = static_cast<char>(bad_crc[29] ^ 0xff);
  ASSERT_THAT(WriteFileAtomic(Path("crc.png"), bad_crc), IsOk());
  EXPECT_THAT(ReadError(Path("crc.png")), HasSubstr("CRC"));
  // A 100000 x 8 image: the width field is checked before any allocation.
  RawPng wide;
  wide.width = 100000;
  wide.height = 1;
  wide.bit_depth = 1;
  wide.rows = {std::vector<uint8_t>(12500, 0)};
  ASSERT_TRUE(WriteRawPng(Path("wide.png"), wide));
  EXPECT_THAT(ReadError(Path("wide.png")), HasSubstr("exceeds user limit"));
}

TEST_F(PngImageTest, WriteErrors) {
  absl::Status st = WritePngGray(Path("z.png"), GrayImage{});
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("cannot write a 0x0 PNG"));
  GrayImage bad = Filled(4, 4, 0);
  bad.pixels.pop_back();
  st = WritePngGray(Path("z.png"), bad);
  EXPECT_THAT(std::string(st.message()), HasSubstr("image has 15 pixels, expected"));
  EXPECT_FALSE(FileExists(Path("z.png")));
  st = WritePngGray(dir_ + "/no/dir/z.png", Filled(2, 2, 1));
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr(dir_ + "/no/dir/z.png"));
}

// ---- MNIST-style preprocessing -------------------------------------------------------------

TEST(ToMnistStyleTest, BarKeepsAspectAndIsCenteredByMass) {
  // A 10 x 40 white bar: scaled by 1/2 to 5 x 20; its center of mass, pixel index
  // (2, 9.5), goes to (14, 14): offsets 12 and round(4.5) = 5.
  GrayImage image = Filled(60, 70, 0);
  FillRect(&image, 7, 13, 17, 53, 255);
  GrayImage out = ToMnistStyle(image);
  ASSERT_EQ(out.width, 28);
  ASSERT_EQ(out.height, 28);
  GrayImage expected = Filled(28, 28, 0);
  FillRect(&expected, 12, 5, 17, 25, 255);
  EXPECT_EQ(out.pixels, expected.pixels);
}

TEST(ToMnistStyleTest, SmallBlobIsEnlargedToTwentyPixels) {
  GrayImage image = Filled(30, 30, 0);
  FillRect(&image, 13, 12, 17, 16, 200);
  GrayImage expected = Filled(28, 28, 0);
  // Background is already 0, so levels are kept; bilinear enlargement of a flat square,
  // center of mass (9.5, 9.5) -> offset round(4.5) = 5.
  FillRect(&expected, 5, 5, 25, 25, 200);
  EXPECT_EQ(ToMnistStyle(image).pixels, expected.pixels);
}

TEST(ToMnistStyleTest, BlankImagesGiveZeros) {
  const std::vector<uint8_t> zeros(784, 0);
  for (uint8_t level : {0, 128, 255}) {
    EXPECT_EQ(ToMnistStyle(Filled(50, 40, level)).pixels, zeros) << int{level};
  }
  EXPECT_EQ(ToMnistStyle(GrayImage{}).pixels, zeros);
  EXPECT_EQ(ToMnistStyle(Filled(1, 1, 255)).pixels, zeros);
  // Uniform noise is paper, not a digit.
  GrayImage noise = Filled(60, 50, 0);
  uint32_t state = 7;
  for (uint8_t& p : noise.pixels) {
    state = state * 1103515245u + 12345u;
    p = static_cast<uint8_t>(200 + (state >> 16) % 21);
  }
  EXPECT_EQ(ToMnistStyle(noise).pixels, zeros);
  // A floor on the ink level turns faint marks into nothing.
  GrayImage faint = Filled(40, 40, 0);
  FillRect(&faint, 15, 15, 25, 25, 5);
  EXPECT_NE(ToMnistStyle(faint).pixels, zeros);
  MnistStyleOptions strict;
  strict.ink_threshold = 10;
  EXPECT_EQ(ToMnistStyle(faint, strict).pixels, zeros);
}

TEST(ToMnistStyleTest, PositionAndPolarityDoNotMatter) {
  MnistSet set = TestDigits(3);
  ASSERT_EQ(set.size(), 3);
  for (int64_t d = 0; d < 3; ++d) {
    const GrayImage digit = Digit(set, d);
    GrayImage reference;
    // White on black at three places, and dark ink on light gray paper.
    for (int variant = 0; variant < 4; ++variant) {
      const bool paper = variant == 3;
      const int64_t ox = 5 + 17 * variant, oy = 40 - 9 * variant;
      GrayImage canvas = Filled(100, 90, paper ? 230 : 0);
      for (int64_t y = 0; y < 28; ++y) {
        for (int64_t x = 0; x < 28; ++x) {
          const int v = digit.at(x, y);
          // Paper: ink darkens 230 towards 0 in proportion to v.
          canvas.pixels[(oy + y) * 100 + ox + x] =
              static_cast<uint8_t>(paper ? 230 - (230 * v + 127) / 255 : v);
        }
      }
      GrayImage out = ToMnistStyle(canvas);
      if (variant == 0) {
        reference = out;
      } else if (paper) {
        EXPECT_LE(MaxAbsDiff(out.pixels, reference.pixels), 2) << "digit " << d;
      } else {
        EXPECT_EQ(out.pixels, reference.pixels) << "digit " << d << " variant " << variant;
      }
    }
  }
}

// Scanner-like noise on the paper raises the ink threshold instead of blowing the
// bounding box up to the whole page.
TEST(ToMnistStyleTest, NoisyPaperKeepsTheDigit) {
  MnistSet set = TestDigits(5);
  ASSERT_EQ(set.size(), 5);
  uint32_t state = 99;
  for (int64_t d = 0; d < set.size(); ++d) {
    const GrayImage digit = Digit(set, d);
    GrayImage canvas = Filled(120, 100, 0);
    for (int64_t y = 0; y < canvas.height; ++y) {
      for (int64_t x = 0; x < canvas.width; ++x) {
        state = state * 1103515245u + 12345u;
        const int noise = static_cast<int>((state >> 16) % 25);  // paper 205..229
        const int64_t dx = x - 40, dy = y - 30;
        const int v = dx >= 0 && dy >= 0 && dx < 28 && dy < 28 ? digit.at(dx, dy) : 0;
        canvas.pixels[y * canvas.width + x] = static_cast<uint8_t>(std::max(0, 229 - noise - v));
      }
    }
    // The noise floor can trim a faint edge row from the box (a 1-pixel shift or a 19/20
    // rescale), so compare up to a 1-pixel translation.
    GrayImage out = ToMnistStyle(canvas);
    double best = 1e9;
    for (int sy = -1; sy <= 1; ++sy) {
      for (int sx = -1; sx <= 1; ++sx) {
        double sum = 0;
        for (int64_t y = 0; y < 28; ++y) {
          for (int64_t x = 0; x < 28; ++x) {
            const int64_t u = x + sx, v = y + sy;
            const int shifted = u >= 0 && v >= 0 && u < 28 && v < 28 ? out.at(u, v) : 0;
            sum += std::abs(shifted - int{digit.at(x, y)});
          }
        }
        best = std::min(best, sum / 784);
      }
    }
    std::cout << "[ INFO     ] noisy paper digit " << d << ": mean |diff| "
              << MeanAbsDiff(out.pixels, digit.pixels) << ", best within 1-pixel shift " << best
              << std::endl;
    EXPECT_LT(best, 8.0) << "digit " << d;
  }
}

TEST(ToMnistStyleTest, TensorIsScaledPixels) {
  GrayImage image{2, 2, {0, 51, 255, 102}};
  at::Tensor t = GrayImageToTensor(image);
  ASSERT_EQ(t.sizes(), (at::IntArrayRef{4}));
  EXPECT_EQ(t.scalar_type(), at::kFloat);
  EXPECT_FLOAT_EQ(t[1].item<float>(), 0.2f);
  EXPECT_FLOAT_EQ(t[2].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(t[3].item<float>(), 0.4f);
}

// An MNIST digit written to PNG reads back bit-exact, and MNIST preprocessing leaves an
// already-normalized digit nearly unchanged.
TEST_F(PngImageTest, MnistDigitThroughPngComesBackClose) {
  const int64_t n = 200;
  MnistSet set = TestDigits(n);
  ASSERT_EQ(set.size(), n);
  int worst_max = 0;
  double worst_mean = 0, total_mean = 0;
  for (int64_t i = 0; i < n; ++i) {
    const GrayImage digit = Digit(set, i);
    const std::string path = Path("digit" + std::to_string(i) + ".png");
    ASSERT_THAT(WritePngGray(path, digit), IsOk());
    GrayImage back = ReadOk(path);
    ASSERT_EQ(back.pixels, digit.pixels) << "digit " << i;
    GrayImage styled = ToMnistStyle(back);
    const double mean = MeanAbsDiff(styled.pixels, digit.pixels);
    worst_max = std::max(worst_max, MaxAbsDiff(styled.pixels, digit.pixels));
    worst_mean = std::max(worst_mean, mean);
    total_mean += mean;
  }
  std::cout << "[ INFO     ] MNIST digit -> PNG -> ToMnistStyle over " << n
            << " test digits: mean |diff| " << total_mean / n << ", worst digit mean " << worst_mean
            << ", max |diff| " << worst_max << " (of 255)" << std::endl;
  EXPECT_LT(total_mean / n, 0.05);
  EXPECT_LT(worst_mean, 1.0);

  // All 1,000 test digits, straight through ToMnistStyle.
  MnistSet all = TestDigits(-1);
  ASSERT_EQ(all.size(), 1000);
  int64_t unchanged = 0;
  double all_mean = 0;
  for (int64_t i = 0; i < all.size(); ++i) {
    const GrayImage digit = Digit(all, i);
    const std::vector<uint8_t> styled = ToMnistStyle(digit).pixels;
    unchanged += styled == digit.pixels;
    all_mean += MeanAbsDiff(styled, digit.pixels);
  }
  std::cout << "[ INFO     ] ToMnistStyle over all 1000 test digits: " << unchanged
            << " unchanged, mean |diff| " << all_mean / 1000 << std::endl;
  EXPECT_GE(unchanged, 900);        // 942 at the time of writing
  EXPECT_LT(all_mean / 1000, 0.1);  // 0.044 at the time of writing
}

// A digit drawn 5x larger, black on white, with a transparent background (RGBA), at an
// arbitrary place on a larger non-square page, comes back as the MNIST digit.
TEST_F(PngImageTest, LargeBlackOnWhiteRgbaComesBackClose) {
  const int64_t n = 50;
  MnistSet set = TestDigits(n);
  ASSERT_EQ(set.size(), n);
  double total_mean = 0, worst_mean = 0;
  for (int64_t i = 0; i < n; ++i) {
    const GrayImage digit = Digit(set, i);
    const bool transparent = i % 2 == 0;
    RawPng png;
    png.width = 190;
    png.height = 160;
    png.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
    const int64_t ox = 23 + i % 7, oy = 8 + i % 5;
    for (uint32_t y = 0; y < png.height; ++y) {
      std::vector<uint8_t> row;
      for (uint32_t x = 0; x < png.width; ++x) {
        const int64_t dx = (static_cast<int64_t>(x) - ox) / 5,
                      dy = (static_cast<int64_t>(y) - oy) / 5;
        const bool inside = x >= ox && y >= oy && dx < 28 && dy < 28;
        const uint8_t v = inside ? digit.at(dx, dy) : 0;
        if (transparent) {  // black ink whose coverage is the alpha
          row.insert(row.end(), {0, 0, 0, v});
        } else {  // opaque white paper, dark ink
          const uint8_t g = static_cast<uint8_t>(255 - v);
          row.insert(row.end(), {g, g, g, 255});
        }
      }
      png.rows.push_back(row);
    }
    const std::string path = Path("big" + std::to_string(i) + ".png");
    ASSERT_TRUE(WriteRawPng(path, png));
    auto styled = LoadPngAsMnist(path);
    ASSERT_THAT(styled, IsOk());
    const double mean = MeanAbsDiff(styled->pixels, digit.pixels);
    total_mean += mean;
    worst_mean = std::max(worst_mean, mean);
  }
  std::cout << "[ INFO     ] 5x black-on-white RGBA -> ToMnistStyle over " << n
            << " digits: mean |diff| " << total_mean / n << ", worst digit mean " << worst_mean
            << std::endl;
  // Block means of a 5x nearest-neighbour enlargement are the original pixels.
  EXPECT_LT(total_mean / n, 0.1);
  EXPECT_LT(worst_mean, 0.5);
}

}  // namespace
}  // namespace llava
