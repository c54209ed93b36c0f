#include "tests/test_util.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

namespace llava::testing {
namespace {
std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}
}  // namespace

std::string SourceDir() { return LLAVA_SOURCE_DIR; }
std::string BinaryPath() { return std::string(LLAVA_BINARY_DIR) + "/bin/llava-mnist"; }

std::string FixturesDir() {
  return EnvOr("LLAVA_FIXTURES", SourceDir() + "/../shared/fixtures");
}

std::string TokenizerPath() {
  return EnvOr("LLAVA_TOKENIZER", SourceDir() + "/data/tokenizer/tokenizer.json");
}

std::string MakeTempDir(const std::string& tag) {
  std::string base = EnvOr("TMPDIR", "/tmp");
  std::string templ = base + "/llava-" + tag + "-XXXXXX";
  char* made = mkdtemp(templ.data());
  if (made == nullptr) return "";
  return made;
}

double RelError(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.detach().to(at::kCPU, at::kDouble);
  at::Tensor y = b.detach().to(at::kCPU, at::kDouble);
  double denom = y.norm().item<double>();
  double num = (x - y).norm().item<double>();
  return denom == 0.0 ? num : num / denom;
}

}  // namespace llava::testing
