#include "common/png_image.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace llava {
namespace {

// ---- libpng plumbing -------------------------------------------------------------
// libpng reports errors by longjmp. Everything that must survive one (buffers, the
// message) lives in this struct, owned by a frame above the setjmp, so no C++ object
// with a destructor is ever jumped over.
struct PngIo {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::string_view in;  // reading: the file's bytes
  size_t pos = 0;
  std::string* out = nullptr;  // writing: the encoded bytes
  char error[256] = {0};
  char warning[256] = {0};
};

// "error (last warning)" for a failed decode or encode.
std::string PngFailure(const PngIo& io) {
  if (io.error[0] == '\0') return "cannot allocate libpng info";
  if (io.warning[0] == '\0') return io.error;
  return absl::StrCat(io.error, " (", io.warning, ")");
}

void OnPngError(png_structp png, png_const_charp message) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->error, sizeof(io->error), "%s", message != nullptr ? message : "?");
  png_longjmp(png, 1);
}

// Warnings (e.g. an odd iCCP profile) do not stop decoding, so they stay off stderr; the
// last one is kept because libpng often explains a fatal error in the warning before it
// ("width exceeds user limit" then "Invalid IHDR data").
void OnPngWarning(png_structp png, png_const_charp message) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->warning, sizeof(io->warning), "%s", message != nullptr ? message : "?");
}

void ReadFromMemory(png_structp png, png_bytep dst, png_size_t length) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (io->in.size() - io->pos < length) {
    png_error(png, "unexpected end of file (truncated PNG)");
  }
  std::memcpy(dst, io->in.data() + io->pos, length);
  io->pos += length;
}

void WriteToString(png_structp png, png_bytep src, png_size_t length) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    io->out->append(reinterpret_cast<const char*>(src), length);
  } catch (const std::bad_alloc&) {
    ok = false;
  }
  if (!ok) png_error(png, "out of memory");
}

void FlushNothing(png_structp) {}

struct RgbaBuffer {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height, width, 4]
  std::vector<png_bytep> rows;
};

// Decodes io->in into 8-bit RGBA whatever the PNG's format. Returns false with io->error
// set when libpng fails. Only trivially destructible locals live in this frame.
bool DecodeRgba(PngIo* io, RgbaBuffer* out) {
  if (setjmp(png_jmpbuf(io->png))) return false;
  png_set_read_fn(io->png, io, ReadFromMemory);
  png_set_user_limits(io->png, kMaxPngSide, kMaxPngSide);
  png_read_info(io->png, io->info);
  const int color_type = png_get_color_type(io->png, io->info);
  png_set_expand(io->png);  // palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha
#ifdef PNG_READ_SCALE_16_TO_8_SUPPORTED
  png_set_scale_16(io->png);
#else
  png_set_strip_16(io->png);
#endif
  if ((color_type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(io->png);
  if ((color_type & PNG_COLOR_MASK_ALPHA) == 0 &&
      png_get_valid(io->png, io->info, PNG_INFO_tRNS) == 0) {
    png_set_add_alpha(io->png, 0xff, PNG_FILLER_AFTER);
  }
  png_set_interlace_handling(io->png);
  png_read_update_info(io->png, io->info);
  out->width = png_get_image_width(io->png, io->info);
  out->height = png_get_image_height(io->png, io->info);
  if (png_get_rowbytes(io->png, io->info) != size_t{out->width} * 4) {
    png_error(io->png, "unsupported pixel layout after conversion to RGBA");
  }
  out->pixels.resize(size_t{out->width} * out->height * 4);
  out->rows.resize(out->height);
  for (uint32_t y = 0; y < out->height; ++y) {
    out->rows[y] = out->pixels.data() + size_t{y} * out->width * 4;
  }
  png_read_image(io->png, out->rows.data());
  png_read_end(io->png, nullptr);
  return true;
}

// Encodes 8-bit gray rows into io->out; false with io->error set on failure.
bool EncodeGray(PngIo* io, const GrayImage& image, std::vector<png_bytep>* rows) {
  if (setjmp(png_jmpbuf(io->png))) return false;
  png_set_write_fn(io->png, io, WriteToString, FlushNothing);
  png_set_IHDR(io->png, io->info, static_cast<png_uint_32>(image.width),
               static_cast<png_uint_32>(image.height), 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(io->png, 9);
  png_write_info(io->png, io->info);
  png_write_image(io->png, rows->data());
  png_write_end(io->png, nullptr);
  return true;
}

// Rec. 601 luma, then "over white": a = 0 is paper.
uint8_t RgbaToGray(const uint8_t* p) {
  const uint32_t luma = (299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u;
  const uint32_t a = p[3];
  return static_cast<uint8_t>((luma * a + 255u * (255u - a) + 127u) / 255u);
}

// ---- MNIST preprocessing ---------------------------------------------------------

struct FloatImage {
  int64_t width = 0, height = 0;
  std::vector<float> pixels;  // [height, width]
  float& at(int64_t x, int64_t y) { return pixels[y * width + x]; }
  float at(int64_t x, int64_t y) const { return pixels[y * width + x]; }
};

struct Box {
  int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // [x0, x1) x [y0, y1)
  int64_t width() const { return x1 - x0; }
  int64_t height() const { return y1 - y0; }
};

// Thickness of the frame that stands for "the background" (polarity, paper level, noise).
int64_t BorderWidth(int64_t width, int64_t height) {
  return std::max<int64_t>(1, std::min(width, height) / 10);
}

bool OnBorder(int64_t width, int64_t height, int64_t x, int64_t y, int64_t border) {
  return x < border || y < border || x >= width - border || y >= height - border;
}

// MNIST is a light digit on black; a border brighter than the center means dark ink on
// paper. A uniform image (no contrast to judge) is inverted when bright, so that a blank
// white page becomes a blank black canvas.
bool NeedsInversion(const GrayImage& image) {
  const int64_t border = BorderWidth(image.width, image.height);
  double border_sum = 0, center_sum = 0;
  int64_t border_n = 0, center_n = 0;
  const int64_t cx0 = image.width / 4, cx1 = std::max(cx0 + 1, image.width - image.width / 4);
  const int64_t cy0 = image.height / 4, cy1 = std::max(cy0 + 1, image.height - image.height / 4);
  for (int64_t y = 0; y < image.height; ++y) {
    for (int64_t x = 0; x < image.width; ++x) {
      const uint8_t v = image.at(x, y);
      if (OnBorder(image.width, image.height, x, y, border)) {
        border_sum += v;
        ++border_n;
      }
      if (x >= cx0 && x < cx1 && y >= cy0 && y < cy1) {
        center_sum += v;
        ++center_n;
      }
    }
  }
  const double border_mean = border_sum / std::max<int64_t>(border_n, 1);
  const double center_mean = center_sum / std::max<int64_t>(center_n, 1);
  if (std::abs(border_mean - center_mean) < 0.5) return border_mean > 127.5;
  return border_mean > center_mean;
}

// Median of the border pixels (after inversion): the paper's level, robust to ink that
// touches the edge.
int BackgroundLevel(const GrayImage& image, bool invert) {
  const int64_t border = BorderWidth(image.width, image.height);
  int64_t histogram[256] = {0};
  int64_t count = 0;
  for (int64_t y = 0; y < image.height; ++y) {
    for (int64_t x = 0; x < image.width; ++x) {
      if (!OnBorder(image.width, image.height, x, y, border)) continue;
      const uint8_t v = image.at(x, y);
      ++histogram[invert ? 255 - v : v];
      ++count;
    }
  }
  int64_t seen = 0;
  for (int level = 0; level < 256; ++level) {
    seen += histogram[level];
    if (2 * seen > count) return level;
  }
  return 0;
}

// White-on-black with the background level mapped to 0 and the range restretched to 255.
FloatImage Normalize(const GrayImage& image) {
  const bool invert = NeedsInversion(image);
  const int background = BackgroundLevel(image, invert);
  FloatImage out{image.width, image.height, std::vector<float>(image.pixels.size(), 0.0f)};
  if (background >= 255) return out;
  const float gain = 255.0f / static_cast<float>(255 - background);
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    const int v = invert ? 255 - image.pixels[i] : image.pixels[i];
    out.pixels[i] = std::max(0.0f, static_cast<float>(v - background) * gain);
  }
  return out;
}

// Pixels above this are ink. On clean images that is anything above the paper (MNIST's
// faint anti-aliased edges belong to its 20-pixel box); on noisy ones it rises to the
// paper's noise ceiling, the brightest border pixel, capped so that ink touching the
// border cannot hide the digit's strokes.
float InkThreshold(const FloatImage& ink, int floor) {
  constexpr float kMaxNoise = 64.0f;
  const int64_t border = BorderWidth(ink.width, ink.height);
  float noise = 0.0f;
  for (int64_t y = 0; y < ink.height; ++y) {
    for (int64_t x = 0; x < ink.width; ++x) {
      if (OnBorder(ink.width, ink.height, x, y, border)) noise = std::max(noise, ink.at(x, y));
    }
  }
  return std::max(std::min(noise, kMaxNoise), static_cast<float>(floor));
}

// Bounding box of pixels above `threshold`; empty (width 0) when there are none.
Box InkBox(const FloatImage& image, float threshold) {
  Box box{image.width, image.height, 0, 0};
  for (int64_t y = 0; y < image.height; ++y) {
    for (int64_t x = 0; x < image.width; ++x) {
      if (image.at(x, y) <= threshold) continue;
      box.x0 = std::min(box.x0, x);
      box.y0 = std::min(box.y0, y);
      box.x1 = std::max(box.x1, x + 1);
      box.y1 = std::max(box.y1, y + 1);
    }
  }
  if (box.x1 <= box.x0) return Box{};
  return box;
}

// Source taps of one output sample along an axis.
struct Taps {
  int64_t first = 0;
  std::vector<float> weights;
};

// Shrinking averages the exact area each output pixel covers (no aliasing, and an
// integer factor gives plain block means); enlarging interpolates linearly. Equal sizes
// are the identity either way.
std::vector<Taps> AxisTaps(int64_t src, int64_t dst) {
  std::vector<Taps> taps(static_cast<size_t>(dst));
  const double ratio = static_cast<double>(src) / static_cast<double>(dst);
  for (int64_t o = 0; o < dst; ++o) {
    Taps& t = taps[static_cast<size_t>(o)];
    if (dst <= src) {
      const double lo = o * ratio, hi = (o + 1) * ratio;
      t.first = static_cast<int64_t>(std::floor(lo));
      const int64_t last = std::min<int64_t>(src - 1, static_cast<int64_t>(std::ceil(hi)) - 1);
      for (int64_t i = t.first; i <= last; ++i) {
        const double overlap = std::min<double>(hi, i + 1) - std::max<double>(lo, i);
        t.weights.push_back(static_cast<float>(std::max(0.0, overlap) / ratio));
      }
    } else {
      const double center = (o + 0.5) * ratio - 0.5;
      const double base = std::floor(center);
      const float frac = static_cast<float>(center - base);
      const int64_t i0 = std::clamp<int64_t>(static_cast<int64_t>(base), 0, src - 1);
      const int64_t i1 = std::clamp<int64_t>(static_cast<int64_t>(base) + 1, 0, src - 1);
      t.first = std::min(i0, i1);
      t.weights = i0 == i1 ? std::vector<float>{1.0f} : std::vector<float>{1.0f - frac, frac};
    }
  }
  return taps;
}

// Resamples the `box` region of `src` to dst_width x dst_height, separably.
FloatImage Resample(const FloatImage& src, const Box& box, int64_t dst_width, int64_t dst_height) {
  const std::vector<Taps> xt = AxisTaps(box.width(), dst_width);
  const std::vector<Taps> yt = AxisTaps(box.height(), dst_height);
  FloatImage rows{dst_width, box.height(), std::vector<float>(dst_width * box.height())};
  for (int64_t y = 0; y < box.height(); ++y) {
    for (int64_t x = 0; x < dst_width; ++x) {
      const Taps& t = xt[static_cast<size_t>(x)];
      float sum = 0;
      for (size_t k = 0; k < t.weights.size(); ++k) {
        sum += t.weights[k] * src.at(box.x0 + t.first + static_cast<int64_t>(k), box.y0 + y);
      }
      rows.at(x, y) = sum;
    }
  }
  FloatImage out{dst_width, dst_height, std::vector<float>(dst_width * dst_height)};
  for (int64_t y = 0; y < dst_height; ++y) {
    const Taps& t = yt[static_cast<size_t>(y)];
    for (int64_t x = 0; x < dst_width; ++x) {
      float sum = 0;
      for (size_t k = 0; k < t.weights.size(); ++k) {
        sum += t.weights[k] * rows.at(x, t.first + static_cast<int64_t>(k));
      }
      out.at(x, y) = sum;
    }
  }
  return out;
}

// Integer offset that puts the center of mass at pixel index canvas/2 (MNIST's convention:
// over its digits the mean center of mass is (14.0, 14.0) in pixel indices, each within
// +-0.5), kept so the whole digit stays on the canvas (MNIST's 4-pixel margin usually makes
// that a no-op).
void PlaceByMass(const FloatImage& digit, int64_t canvas, int64_t* ox, int64_t* oy) {
  double mass = 0, mx = 0, my = 0;
  for (int64_t y = 0; y < digit.height; ++y) {
    for (int64_t x = 0; x < digit.width; ++x) {
      const double v = digit.at(x, y);
      mass += v;
      mx += v * x;
      my += v * y;
    }
  }
  const double cx = mass > 0 ? mx / mass : (digit.width - 1) / 2.0;
  const double cy = mass > 0 ? my / mass : (digit.height - 1) / 2.0;
  *ox = std::clamp<int64_t>(std::lround(canvas / 2 - cx), 0, canvas - digit.width);
  *oy = std::clamp<int64_t>(std::lround(canvas / 2 - cy), 0, canvas - digit.height);
}

}  // namespace

absl::StatusOr<GrayImage> DecodePngGray(std::string_view data, const std::string& name) {
  if (data.empty())
    return absl::InvalidArgumentError(absl::StrCat(name, ": empty file, not a PNG"));
  if (data.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(data.data()), 0, 8) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a PNG file (the 8-byte PNG signature is missing)"));
  }
  PngIo io;
  io.in = data;
  io.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, OnPngError, OnPngWarning);
  if (io.png == nullptr)
    return absl::InternalError(absl::StrCat(name, ": png_create_read_struct failed"));
  io.info = png_create_info_struct(io.png);
  RgbaBuffer rgba;
  const bool ok = io.info != nullptr && DecodeRgba(&io, &rgba);
  png_destroy_read_struct(&io.png, io.info != nullptr ? &io.info : nullptr, nullptr);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": invalid PNG: ", PngFailure(io)));
  }
  GrayImage gray;
  gray.width = rgba.width;
  gray.height = rgba.height;
  gray.pixels.resize(size_t{rgba.width} * rgba.height);
  for (size_t i = 0; i < gray.pixels.size(); ++i) gray.pixels[i] = RgbaToGray(&rgba.pixels[4 * i]);
  return gray;
}

absl::StatusOr<GrayImage> ReadPngGray(const std::string& path) {
  LM_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
  return DecodePngGray(data, path);
}

absl::StatusOr<std::string> EncodePngGray(const GrayImage& image, const std::string& name) {
  if (image.width <= 0 || image.height <= 0 || image.width > kMaxPngSide ||
      image.height > kMaxPngSide) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": cannot write a ", image.width, "x",
                                                   image.height, " PNG (sides must be 1..",
                                                   kMaxPngSide, ")"));
  }
  if (static_cast<int64_t>(image.pixels.size()) != image.width * image.height) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": image has ", image.pixels.size(),
                     " pixels, expected width x height = ", image.width * image.height));
  }
  std::vector<png_bytep> rows(static_cast<size_t>(image.height));
  for (int64_t y = 0; y < image.height; ++y) {
    rows[static_cast<size_t>(y)] = const_cast<png_bytep>(image.pixels.data() + y * image.width);
  }
  std::string out;
  PngIo io;
  io.out = &out;
  io.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, OnPngError, OnPngWarning);
  if (io.png == nullptr)
    return absl::InternalError(absl::StrCat(name, ": png_create_write_struct failed"));
  io.info = png_create_info_struct(io.png);
  const bool ok = io.info != nullptr && EncodeGray(&io, image, &rows);
  png_destroy_write_struct(&io.png, io.info != nullptr ? &io.info : nullptr);
  if (!ok) {
    return absl::InternalError(absl::StrCat(name, ": PNG encoding failed: ", PngFailure(io)));
  }
  return out;
}

absl::Status WritePngGray(const std::string& path, const GrayImage& image) {
  LM_ASSIGN_OR_RETURN(std::string bytes, EncodePngGray(image, path));
  return WriteFileAtomic(path, bytes);
}

GrayImage ToMnistStyle(const GrayImage& image, const MnistStyleOptions& options) {
  LM_CHECK_EQ(static_cast<int64_t>(image.pixels.size()), image.width * image.height);
  LM_CHECK(options.box_size > 0 && options.box_size <= options.canvas_size);
  const int64_t canvas = options.canvas_size;
  GrayImage out{canvas, canvas, std::vector<uint8_t>(canvas * canvas, 0)};
  if (image.pixels.empty()) return out;

  const FloatImage ink = Normalize(image);
  const Box box = InkBox(ink, InkThreshold(ink, options.ink_threshold));
  if (box.width() == 0) return out;

  const int64_t longer = std::max(box.width(), box.height());
  const double scale = static_cast<double>(options.box_size) / static_cast<double>(longer);
  const int64_t w = std::clamp<int64_t>(std::lround(box.width() * scale), 1, options.box_size);
  const int64_t h = std::clamp<int64_t>(std::lround(box.height() * scale), 1, options.box_size);
  const FloatImage digit = Resample(ink, box, w, h);

  int64_t ox = 0, oy = 0;
  PlaceByMass(digit, canvas, &ox, &oy);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const float v = std::clamp(digit.at(x, y), 0.0f, 255.0f);
      out.pixels[(oy + y) * canvas + ox + x] = static_cast<uint8_t>(std::lround(v));
    }
  }
  return out;
}

absl::StatusOr<GrayImage> LoadPngAsMnist(const std::string& path,
                                         const MnistStyleOptions& options) {
  LM_ASSIGN_OR_RETURN(GrayImage image, ReadPngGray(path));
  return ToMnistStyle(image, options);
}

at::Tensor GrayImageToTensor(const GrayImage& image) {
  LM_CHECK_EQ(static_cast<int64_t>(image.pixels.size()), image.width * image.height);
  if (image.pixels.empty()) return at::zeros({0}, at::kFloat);
  at::Tensor bytes = at::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                                   {image.width * image.height}, at::kByte);
  return bytes.to(at::kFloat).div_(255.0f);  // [H*W]
}

}  // namespace llava
