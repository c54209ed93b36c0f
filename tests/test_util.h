// Shared helpers for the test suite: where fixtures live, and tensor comparisons.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace llava::testing {

// $LLAVA_FIXTURES, default <source>/../shared/fixtures.
std::string FixturesDir();
// $LLAVA_TOKENIZER, default <source>/data/tokenizer/tokenizer.json.
std::string TokenizerPath();
// <source>; tests run with it as the working directory.
std::string SourceDir();
// <build>/bin/llava-mnist.
std::string BinaryPath();
// A fresh empty directory under the test temp dir, removed by nobody (ctest's tmp).
std::string MakeTempDir(const std::string& tag);

// ||a - b|| / ||b|| in float64.
double RelError(const at::Tensor& a, const at::Tensor& b);

}  // namespace llava::testing
