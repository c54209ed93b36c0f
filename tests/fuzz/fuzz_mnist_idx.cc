// libFuzzer target: MNIST IDX files (raw or gzip), read from disk as the trainer does.
// First byte 0: the rest is one file, read as an images file and as a labels file (and
// gunzipped); k > 0: two bytes (little-endian) give the images file's length, then the
// images file and the labels file follow, loaded as a set (all samples for k = 1, the
// first k - 2 otherwise) and turned into tensors.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/mnist_idx.h"

namespace {

std::string g_dir;

void Write(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // /dev/shm where there is one: every input is written to a file.
  const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  char tmpl[64];
  std::snprintf(tmpl, sizeof(tmpl), "%s/fuzz_mnist_idx.XXXXXX", base);
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  g_dir = tmpl;
  std::atexit([] {
    std::remove((g_dir + "/images").c_str());
    std::remove((g_dir + "/labels").c_str());
    std::remove(g_dir.c_str());
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string images_path = g_dir + "/images", labels_path = g_dir + "/labels";
  if (data[0] == 0) {
    Write(images_path, data + 1, size - 1);
    (void)llava::ReadIdxImages(images_path);
    (void)llava::ReadIdxLabels(images_path);
    const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
    if (llava::IsGzip(bytes)) (void)llava::GzipDecompress(bytes, "fuzz.gz", 64 << 20);
    return 0;
  }
  if (size < 3) return 0;
  const size_t images_size = std::min<size_t>(data[1] | data[2] << 8, size - 3);
  Write(images_path, data + 3, images_size);
  Write(labels_path, data + 3 + images_size, size - 3 - images_size);
  auto set = llava::LoadMnist(images_path, labels_path, data[0] == 1 ? -1 : data[0] - 2);
  if (!set.ok()) return 0;
  (void)llava::ImagesToTensor(*set, 0, set->size());
  (void)llava::LabelsToTensor(*set, set->size() / 2, set->size());
  return 0;
}
