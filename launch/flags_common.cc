#include "launch/flags_common.h"

#include "absl/flags/flag.h"
#include "common/file_util.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, model, llava::GetEnvOr("LLAVA_MODEL", "data/models/demo-lm"),
          "Hugging Face Llama checkpoint directory, or synthetic:llama-3.1-8b / synthetic:tiny");
ABSL_FLAG(std::string, tokenizer,
          llava::GetEnvOr("LLAVA_TOKENIZER", "data/tokenizer/tokenizer.json"),
          "Llama 3 tokenizer.json");
ABSL_FLAG(std::string, device, llava::GetEnvOr("LLAVA_DEVICE", "auto"),
          "cpu, cuda, cuda:N, or auto (the first GPU if there is one)");
ABSL_FLAG(std::string, dtype, llava::GetEnvOr("LLAVA_DTYPE", "auto"),
          "frozen model dtype: float32, bfloat16, float16, or auto (bfloat16 on GPU, "
          "float32 on CPU)");
ABSL_FLAG(bool, float32_attention, llava::GetEnvOr("LLAVA_FLOAT32_ATTENTION", "true") != "false",
          "bfloat16 models: q/k/v in float32 through RoPE, attention and the KV cache (false: "
          "rounded to bf16 as transformers; ~1% faster, half the KV cache)");
ABSL_FLAG(std::string, data_dir, llava::GetEnvOr("LLAVA_DATA_DIR", "data/mnist"),
          "directory of MNIST IDX files ({train,test}-{images-idx3,labels-idx1}-ubyte[.gz])");

namespace llava {

absl::StatusOr<ModelOptions> ModelOptionsFromFlags() {
  ModelOptions options;
  LM_ASSIGN_OR_RETURN(options.device, ParseDevice(absl::GetFlag(FLAGS_device)));
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype == "auto") {
    options.dtype = options.device.is_cuda() ? at::kBFloat16 : at::kFloat;
  } else {
    LM_ASSIGN_OR_RETURN(options.dtype, ParseDtype(dtype));
  }
  options.synthetic_seed = absl::GetFlag(FLAGS_seed);
  return options;
}

ForwardOptions ForwardOptionsFromFlags() {
  ForwardOptions options;
  options.float32_attention = absl::GetFlag(FLAGS_float32_attention);
  return options;
}

}  // namespace llava
