#include "common/augment.h"

#include <algorithm>
#include <cmath>

#include "common/log.h"

namespace llava {

at::Tensor TransformPixels(const at::Tensor& pixels, const std::vector<AugmentParams>& params,
                           int64_t rows, int64_t cols) {
  const int64_t b = pixels.size(0);
  LM_CHECK(pixels.dim() == 2 && pixels.size(1) == rows * cols) << pixels.sizes();
  LM_CHECK_EQ(static_cast<int64_t>(params.size()), b);
  // For each output pixel (u, v), in pixels from the image centre, the input point it
  // samples: the inverse of "scale by s, turn by a, then move by (dx, dy)", written in
  // grid_sample's normalized coordinates as gx = c0 u + c1 v + c2, gy = c3 u + c4 v + c5.
  std::vector<float> coef;
  coef.reserve(6 * params.size());
  constexpr double kPi = 3.14159265358979323846;
  for (const AugmentParams& p : params) {
    const double a = p.angle_deg * kPi / 180.0, c = std::cos(a) / p.scale,
                 s = std::sin(a) / p.scale;
    const double sx = 2.0 / static_cast<double>(cols), sy = 2.0 / static_cast<double>(rows);
    const double m00 = sx * c, m01 = sx * s, m10 = -sy * s, m11 = sy * c;
    for (double v : {m00, m01, -(m00 * p.dx + m01 * p.dy), m10, m11, -(m10 * p.dx + m11 * p.dy)}) {
      coef.push_back(static_cast<float>(v));
    }
  }
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(pixels.device());
  at::Tensor k = at::tensor(coef, at::kFloat).view({b, 6, 1, 1}).to(pixels.device());
  at::Tensor u =
      (at::arange(cols, f32) + (0.5 - 0.5 * static_cast<double>(cols))).view({1, 1, cols});
  at::Tensor v =
      (at::arange(rows, f32) + (0.5 - 0.5 * static_cast<double>(rows))).view({1, rows, 1});
  auto col = [&](int64_t i) { return k.select(1, i); };  // [B, 1, 1]
  at::Tensor gx = col(0) * u + col(1) * v + col(2);      // [B, rows, cols]
  at::Tensor gy = col(3) * u + col(4) * v + col(5);
  at::Tensor grid = at::stack({gx, gy}, -1);  // [B, rows, cols, 2]
  at::Tensor images = pixels.to(at::kFloat).view({b, 1, rows, cols});
  at::Tensor out =
      at::grid_sampler(images, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners=*/false);
  return out.reshape({b, rows * cols});
}

std::vector<RobustnessView> StandardRobustnessViews() {
  return {
      {"shift 2 px",
       [](int64_t i) {
         static constexpr double kDx[] = {2, -2, 0, 0}, kDy[] = {0, 0, 2, -2};
         AugmentParams p;
         p.dx = kDx[i % 4];
         p.dy = kDy[i % 4];
         return p;
       }},
      {"rotate 10 deg",
       [](int64_t i) {
         AugmentParams p;
         p.angle_deg = i % 2 == 0 ? 10.0 : -10.0;
         return p;
       }},
  };
}

MnistSet TransformSet(const MnistSet& set, const RobustnessView& view) {
  MnistSet out = set;
  if (set.size() == 0) return out;
  std::vector<AugmentParams> params;
  params.reserve(set.size());
  for (int64_t i = 0; i < set.size(); ++i) params.push_back(view.params(i));
  at::Tensor pixels = ImagesToTensor(set, 0, set.size());
  at::Tensor moved = TransformPixels(pixels, params, set.rows, set.cols);
  at::Tensor bytes = (moved.clamp(0, 1) * 255.0).round().to(at::kByte).contiguous();
  std::copy(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel(),
            out.pixels.begin());
  return out;
}

}  // namespace llava
