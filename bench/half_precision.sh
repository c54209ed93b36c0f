#!/usr/bin/env bash
# Half precision against float32 on one GPU (issue 5): bfloat16 and float16 (the backward
# pass loss-scaled) through the synthetic Llama-3.1-8B: the training step's speed at
# batch 512 and its loss and projector gradient against the plain float32 path on one
# batch (`bench --check`); then eval answers with the shared prefix against the plain
# path, same dtype, on 1,000 test digits, for a trained projector through the demo LM in
# float32, bfloat16 and float16 (a random 8B's near-tie logits decide nothing).
#   bench/half_precision.sh OUT_DIR
# Environment: LLAVA_BIN (build-gpu/bin/llava-mnist), DEMO_LM (data/models/demo-lm),
# DEMO_PROJECTOR (a projector checkpoint trained on DEMO_LM; runs/latest/projector.safetensors).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${1:-bench/out}
mkdir -p "$OUT"
BIN=${LLAVA_BIN:-build-gpu/bin/llava-mnist}
DEMO=${DEMO_LM:-data/models/demo-lm}
PROJ=${DEMO_PROJECTOR:-runs/latest/projector.safetensors}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
rc=0
for dt in bfloat16 float16; do
  "$BIN" bench --model synthetic:llama-3.1-8b --device cuda --dtype "$dt" --mode train \
    --train_batches 512 --steps 10 --check --json_out "$OUT/train_$dt.json" 2>&1 |
    grep -vE "^[IW][0-9]{8} " | tee "$OUT/train_$dt.txt" || rc=1
done
for dt in float32 bfloat16 float16; do
  "$BIN" bench --model "$DEMO" --tokenizer "$DEMO/tokenizer.json" --device cuda --dtype "$dt" \
    --mode eval --eval_batches 1000 --steps 1 --warmup 0 --answer_tokens 0 --check \
    --bench_projector "$PROJ" --json_out "$OUT/demo_eval_$dt.json" 2>&1 | grep "check eval" |
    sed "s/^/$dt: /" | tee -a "$OUT/demo_eval.txt" || rc=1
done
exit $rc
