// libFuzzer target: a safetensors file's bytes, as a checkpoint received over RPC is
// parsed (SafetensorsFile::FromBytes), then every tensor loaded.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = llava::SafetensorsFile::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
  if (!file.ok()) return 0;
  auto all = (*file)->LoadAll();
  if (all.ok()) {
    for (const llava::NamedTensor& t : *all) (void)(*file)->Find(t.name);
  }
  // A conversion exercises the dtype paths the model loader takes.
  llava::LoadOptions as_float;
  as_float.dtype = at::kFloat;
  (void)(*file)->LoadAll(as_float);
  return 0;
}
