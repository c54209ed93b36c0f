#!/usr/bin/env bash
# What each speed lever of the forward pass buys, on one GPU, in one process per setting
# (same machine, one after the other): `llava-mnist bench` with the levers added one by
# one (none; + the GQA fold; + the lean RMSNorm/RoPE; + the fused SwiGLU; + the fused
# RoPE, decode attention and residual norm = the product's default), then the default with the residual stream in bf16, and with q/k/v
# rounded to bf16 (no float32 attention; bf16 only). JSON and tables
# under OUT_DIR.
#   bench/levers.sh [OUT_DIR]     (default bench/out)
# Environment: LLAVA_BIN (default build-gpu/bin/llava-mnist), LLAVA_MODEL_SPEC (default
# synthetic:llama-3.1-8b), TRAIN_BATCHES (512), EVAL_BATCHES (2000), STEPS (4), WARMUP (2).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out}
mkdir -p "$OUT"
BIN=${LLAVA_BIN:-build-gpu/bin/llava-mnist}
SPEC=${LLAVA_MODEL_SPEC:-synthetic:llama-3.1-8b}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# The kernels of the attention side (RoPE, decode attention, residual + norm), off until
# their own step.
K0="--fused_rope=false --fused_decode_attention=false --fused_residual_norm=false"
for setting in "none --fold_gqa=false --lean_elementwise=false --fused_swiglu=false $K0" \
               "fold --fold_gqa=true --lean_elementwise=false --fused_swiglu=false $K0" \
               "lean --fold_gqa=true --lean_elementwise=true --fused_swiglu=false $K0" \
               "swiglu --fold_gqa=true --lean_elementwise=true --fused_swiglu=true $K0" \
               "default --fold_gqa=true --lean_elementwise=true --fused_swiglu=true" \
               "bf16_residual --residual=model" \
               "bf16_attention --float32_attention=false"; do
  name=${setting%% *}
  # shellcheck disable=SC2086
  "$BIN" bench --model "$SPEC" --device cuda --dtype "${DTYPE:-bf16}" ${setting#* } \
    --train_batches "${TRAIN_BATCHES:-512}" --eval_batches "${EVAL_BATCHES:-2000}" \
    --steps "${STEPS:-4}" --warmup "${WARMUP:-2}" --answer_tokens 0 \
    --json_out "$OUT/levers_$name.json" 2>&1 | grep -av "^I20" | sed "s/^/$name: /"
done
