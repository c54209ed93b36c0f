// Data augmentation: the per-sample parameters as a pure function of the seed, the epoch
// and the digit's index (within their bounds, different across keys); the transform of a
// digit independent of the batch it is in; exact integer shifts; the eval's robustness
// views.
#include "common/augment.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "common/data_plan.h"

namespace llava {
namespace {

using ::testing::HasSubstr;

// n "digits": a bar whose place depends on i, values in [0, 1].
at::Tensor Digits(int64_t n) {
  at::Tensor x = at::zeros({n, 28, 28});
  for (int64_t i = 0; i < n; ++i) {
    x[i].slice(0, 6 + i % 5, 20).slice(1, 10 + i % 3, 14).fill_(1.0);
    x[i][8][5 + i % 7] = 0.5;
  }
  return x.view({n, 784});
}

AugmentConfig Typical() {
  AugmentConfig c;
  c.shift_px = 2;
  c.rotate_deg = 10;
  c.scale = 0.1;
  return c;
}

TEST(AugmentTest, ParamsArePureFunctionsOfTheKeyWithinBounds) {
  const AugmentConfig c = Typical();
  double max_dx = 0, max_angle = 0, max_scale = 0;
  for (uint64_t key = 0; key < 2000; ++key) {
    const AugmentParams a = DrawAugmentParams(c, key), b = DrawAugmentParams(c, key);
    EXPECT_EQ(a.dx, b.dx);
    EXPECT_EQ(a.dy, b.dy);
    EXPECT_EQ(a.angle_deg, b.angle_deg);
    EXPECT_EQ(a.scale, b.scale);
    ASSERT_LE(std::abs(a.dx), 2.0);
    ASSERT_LE(std::abs(a.dy), 2.0);
    ASSERT_LE(std::abs(a.angle_deg), 10.0);
    ASSERT_LE(std::abs(a.scale - 1), 0.1);
    max_dx = std::max(max_dx, std::abs(a.dx));
    max_angle = std::max(max_angle, std::abs(a.angle_deg));
    max_scale = std::max(max_scale, std::abs(a.scale - 1));
  }
  // The draws cover their ranges.
  EXPECT_GT(max_dx, 1.9);
  EXPECT_GT(max_angle, 9.5);
  EXPECT_GT(max_scale, 0.095);
  const AugmentParams x = DrawAugmentParams(c, 1), y = DrawAugmentParams(c, 2);
  EXPECT_NE(x.dx, y.dx);
  // Off: the identity.
  const AugmentParams off = DrawAugmentParams(AugmentConfig(), 5);
  EXPECT_EQ(off.dx, 0);
  EXPECT_EQ(off.angle_deg, 0);
  EXPECT_EQ(off.scale, 1);
}

TEST(AugmentTest, KeysDependOnSeedEpochAndIndexOnly) {
  DataPlanConfig pc;
  pc.num_samples = 100;
  pc.global_batch = 8;
  pc.epochs = 3;
  pc.seed = 7;
  DataPlanConfig other_batch = pc;
  other_batch.global_batch = 32;  // another batch (or world) size: the same keys
  DataPlanConfig other_seed = pc;
  other_seed.seed = 8;
  const DataPlan a(pc), b(other_batch), c(other_seed);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    for (int64_t index = 0; index < 100; ++index) {
      EXPECT_EQ(a.AugmentKey(epoch, index), b.AugmentKey(epoch, index));
      EXPECT_NE(a.AugmentKey(epoch, index), c.AugmentKey(epoch, index));
      EXPECT_NE(a.AugmentKey(epoch, index), a.AugmentKey(epoch + 1, index));
      if (index > 0) EXPECT_NE(a.AugmentKey(epoch, index), a.AugmentKey(epoch, index - 1));
    }
  }
}

TEST(AugmentTest, ValidateNamesTheBound) {
  EXPECT_TRUE(Typical().Validate().ok());
  EXPECT_TRUE(AugmentConfig().Validate().ok());
  EXPECT_FALSE(AugmentConfig().enabled());
  EXPECT_TRUE(Typical().enabled());
  AugmentConfig c;
  c.shift_px = -1;
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("shift"));
  c = AugmentConfig();
  c.rotate_deg = NAN;
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("rotate"));
  c = AugmentConfig();
  c.scale = 0.6;
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("scale"));
  EXPECT_EQ(Typical().ToString(), "shift 2 px, rotate 10 deg, scale 0.1");
}

// The training step splits its samples over ranks and micro-batches: a digit's
// transform must not depend on which others share its batch (N ranks x B/N = 1 x B).
TEST(AugmentTest, EachDigitIsTransformedIndependentlyOfItsBatch) {
  const at::Tensor pixels = Digits(12);
  std::vector<AugmentParams> params;
  for (uint64_t key = 0; key < 12; ++key)
    params.push_back(DrawAugmentParams(Typical(), key * 31 + 3));
  const at::Tensor whole = TransformPixels(pixels, params, 28, 28);
  ASSERT_EQ(whole.sizes(), pixels.sizes());
  for (int64_t parts : {2, 3, 12}) {
    const int64_t n = 12 / parts;
    for (int64_t p = 0; p < parts; ++p) {
      std::vector<AugmentParams> mine(params.begin() + p * n, params.begin() + (p + 1) * n);
      const at::Tensor piece = TransformPixels(pixels.slice(0, p * n, (p + 1) * n), mine, 28, 28);
      EXPECT_TRUE(at::equal(piece, whole.slice(0, p * n, (p + 1) * n)))
          << parts << " parts, part " << p;
    }
  }
  // And it does transform: every digit moved.
  for (int64_t i = 0; i < 12; ++i) EXPECT_FALSE(at::allclose(whole[i], pixels[i])) << i;
}

TEST(AugmentTest, IdentityAndIntegerShiftsAreExact) {
  const at::Tensor pixels = Digits(3);
  const at::Tensor same = TransformPixels(pixels, std::vector<AugmentParams>(3), 28, 28);
  EXPECT_LT((same - pixels).abs().max().item<double>(), 1e-5);
  AugmentParams right;
  right.dx = 2;  // content 2 pixels to the right
  AugmentParams up;
  up.dy = -3;  // content 3 pixels up
  const at::Tensor moved =
      TransformPixels(pixels.slice(0, 0, 2), {right, up}, 28, 28).view({2, 28, 28});
  const at::Tensor img = pixels.view({3, 28, 28});
  EXPECT_LT((moved[0].slice(1, 2, 28) - img[0].slice(1, 0, 26)).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(moved[0].slice(1, 0, 2).abs().max().item<double>(), 0.0);  // zeros came in
  EXPECT_LT((moved[1].slice(0, 0, 25) - img[1].slice(0, 3, 28)).abs().max().item<double>(), 1e-5);
  // A rotation keeps the mass about where it was (bilinear resampling of a bar).
  AugmentParams turn;
  turn.angle_deg = 10;
  const at::Tensor turned = TransformPixels(pixels.slice(0, 0, 1), {turn}, 28, 28);
  EXPECT_NEAR(turned.sum().item<double>(), pixels[0].sum().item<double>(),
              0.05 * pixels[0].sum().item<double>());
  EXPECT_FALSE(at::allclose(turned[0], pixels[0]));
}

TEST(AugmentTest, RobustnessViewsShiftByTwoAndRotateByTen) {
  const auto views = StandardRobustnessViews();
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[0].name, "shift 2 px");
  EXPECT_EQ(views[1].name, "rotate 10 deg");
  for (int64_t i = 0; i < 8; ++i) {
    const AugmentParams s = views[0].params(i);
    EXPECT_EQ(std::abs(s.dx) + std::abs(s.dy), 2.0) << i;
    EXPECT_EQ(std::abs(views[1].params(i).angle_deg), 10.0) << i;
  }
  MnistSet set;
  at::Tensor bytes = (Digits(4) * 255).round().to(at::kByte).contiguous();
  set.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  set.labels = {1, 2, 3, 4};
  const MnistSet shifted = TransformSet(set, views[0]);
  ASSERT_EQ(shifted.size(), 4);
  EXPECT_EQ(shifted.labels, set.labels);
  // Digit 0 moves 2 pixels right, exactly, bytes for bytes.
  for (int64_t y = 0; y < 28; ++y) {
    for (int64_t x = 2; x < 28; ++x) {
      ASSERT_EQ(shifted.image(0)[y * 28 + x], set.image(0)[y * 28 + x - 2]) << y << "," << x;
    }
  }
  const MnistSet turned = TransformSet(set, views[1]);
  EXPECT_NE(turned.pixels, set.pixels);
}

}  // namespace
}  // namespace llava
