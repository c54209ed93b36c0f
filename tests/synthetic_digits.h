// Synthetic MNIST-shaped "digits" for tests that need images but not real ones: each
// label draws its own bars, so a projector can tell them apart, and the rest is a fixed
// pattern. Header only; no state.
#pragma once

#include <cstdint>

#include "common/mnist_idx.h"

namespace llava::testing {

// n digits, labels 0..9 in turn.
inline MnistSet SyntheticDigits(int64_t n) {
  MnistSet set;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = i % 10;
    for (int64_t p = 0; p < 784; ++p) {
      set.pixels.push_back(
          static_cast<uint8_t>(((p / 28 + label * 3) % 28 < 6) ? 200 : (i * 7 + p) % 31));
    }
    set.labels.push_back(static_cast<uint8_t>(label));
  }
  return set;
}

}  // namespace llava::testing
