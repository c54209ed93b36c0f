// Geometric transforms of digit images on any device: the training digits' augmentation
// (per-sample AugmentParams, common/augment_config.h) and the fixed transforms of the
// eval's robustness views (test digits shifted by 2 pixels, rotated by 10 degrees).
// Each output image depends on its own input and parameters only, computed elementwise,
// so a digit comes out the same in any batch. Free functions; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/augment_config.h"
#include "common/mnist_idx.h"

namespace llava {

// pixels [B, rows*cols] (row-major images, values in [0, 1], any floating dtype and
// device) -> [B, rows*cols] float32 on the same device: row b resampled (bilinear, zero
// outside the image) under params[b]. params.size() must be B.
at::Tensor TransformPixels(const at::Tensor& pixels, const std::vector<AugmentParams>& params,
                           int64_t rows, int64_t cols);

// A robustness view of the test digits: a name for the report and each digit's transform.
struct RobustnessView {
  std::string name;
  std::function<AugmentParams(int64_t index)> params;
};

// The eval's views: "shift 2 px" (digit i moved 2 pixels right, left, down or up as
// i % 4) and "rotate 10 deg" (+10 degrees for even i, -10 for odd).
std::vector<RobustnessView> StandardRobustnessViews();

// A copy of `set` with image i transformed by view.params(i) and rounded back to bytes.
MnistSet TransformSet(const MnistSet& set, const RobustnessView& view);

}  // namespace llava
