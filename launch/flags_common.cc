#include "launch/flags_common.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
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
ABSL_FLAG(std::string, weights, llava::GetEnvOr("LLAVA_WEIGHTS", "dense"),
          "frozen matrices: dense (in --dtype) or fp8 (the decoder's matrices as float8 e4m3 "
          "with a scale per row, quantized at load; bfloat16 compute on a GPU of compute "
          "capability 8.9+)");
ABSL_FLAG(std::string, fp8_transposed, llava::GetEnvOr("LLAVA_FP8_TRANSPOSED", "auto"),
          "--weights fp8: keep each matrix's transposed copy for the backward (keep: twice "
          "the FP8 bytes), transpose it at each backward call (per_call), or auto (kept "
          "where the copies take at most half of the GPU's memory)");
ABSL_FLAG(std::string, fp8_backward, llava::GetEnvOr("LLAVA_FP8_BACKWARD", "e4m3"),
          "--weights fp8: the input gradient of each linear layer as an FP8 matmul of the "
          "gradient in e4m3 or e5m2, or bf16 (the weight dequantized for the call)");
ABSL_FLAG(bool, fp8_fuse, llava::GetEnvOr("LLAVA_FP8_FUSE", "true") != "false",
          "--weights fp8: q/k/v and gate/up each held as one matrix (one matmul per input "
          "forward and backward; false: one per matrix)");
ABSL_FLAG(bool, fp8_fast_accum, llava::GetEnvOr("LLAVA_FP8_FAST_ACCUM", "false") == "true",
          "--weights fp8: the FP8 matmuls accumulate without cuBLAS's periodic float32 "
          "promotion (a few percent faster)");
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
  LM_ASSIGN_OR_RETURN(options.weights, ParseWeightFormat(absl::GetFlag(FLAGS_weights)));
  const std::string transposed = absl::GetFlag(FLAGS_fp8_transposed);
  if (transposed == "keep") {
    options.fp8_transposed_copy = true;
  } else if (transposed == "per_call") {
    options.fp8_transposed_copy = false;
  } else if (transposed != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("bad --fp8_transposed '", transposed, "' (auto, keep or per_call)"));
  }
  options.fp8_fuse = absl::GetFlag(FLAGS_fp8_fuse);
  return options;
}

absl::StatusOr<ForwardOptions> ForwardOptionsFromFlags() {
  ForwardOptions options;
  options.float32_attention = absl::GetFlag(FLAGS_float32_attention);
  options.fp8_fast_accum = absl::GetFlag(FLAGS_fp8_fast_accum);
  const std::string backward = absl::GetFlag(FLAGS_fp8_backward);
  if (backward == "e4m3") {
    options.fp8_backward = Fp8Backward::kE4m3;
  } else if (backward == "e5m2") {
    options.fp8_backward = Fp8Backward::kE5m2;
  } else if (backward == "bf16") {
    options.fp8_backward = Fp8Backward::kBf16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("bad --fp8_backward '", backward, "' (e4m3, e5m2 or bf16)"));
  }
  return options;
}

}  // namespace llava
