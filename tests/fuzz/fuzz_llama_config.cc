// libFuzzer target: config.json text as a checkpoint directory holds it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/llama_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = llava::ParseLlamaConfig(std::string_view(reinterpret_cast<const char*>(data), size),
                                        "fuzz/config.json");
  if (!config.ok()) return 0;
  (void)llava::DescribeConfig(*config);
  if (config->Validate().ok()) {
    (void)config->NumParameters();
    (void)config->num_kv_groups();
  }
  return 0;
}
