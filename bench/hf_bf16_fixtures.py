#!/usr/bin/env python3
"""What transformers itself gets in bfloat16 on the tiny fixtures.

Loads each fixture checkpoint with transformers in bf16 (and, for the floor, the
bf16-rounded weights run in float32) and compares its logits, loss and image gradient
with the fixtures' float32 reference (expected.safetensors) by ||a - b|| / ||b||, the
measure llama_model_test uses. Prints one line per (model, device, dtype) and writes JSON.

  python3 bench/hf_bf16_fixtures.py [--fixtures DIR] [--out FILE]
"""
import argparse
import json
import os

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM


def rel(a, b):
    a = a.detach().double().cpu()
    b = b.detach().double().cpu()
    return ((a - b).norm() / b.norm()).item()


def measure(model_dir, device, dtype, upcast_after_rounding=False):
    exp = load_file(os.path.join(model_dir, "expected.safetensors"))
    load_dtype = torch.bfloat16 if upcast_after_rounding else dtype
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=load_dtype,
                                             attn_implementation="sdpa").to(device)
    if upcast_after_rounding:
        model = model.float()
    model.eval()
    ids = exp["input_ids"].to(device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    out = {"logits": rel(logits.float(), exp["logits"])}
    # Loss and gradient with the image embedding spliced in, as the fixtures define them.
    p = int(exp["image_position"].item())
    embeds = model.get_input_embeddings()(ids)
    image = exp["image_embeds"].to(device).float().requires_grad_(True)
    spliced = torch.cat([embeds[:, :p], image.to(embeds.dtype).unsqueeze(1), embeds[:, p + 1:]], 1)
    loss = model(inputs_embeds=spliced, labels=exp["labels"].to(device)).loss
    loss.backward()
    out["loss"] = rel(loss.float().reshape(1), exp["loss"])
    out["grad_image_embeds"] = rel(image.grad, exp["grad_image_embeds"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.environ.get("LLAVA_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in ["tiny-llama3", "tiny-llama3-tied"]:
        d = os.path.join(args.fixtures, name)
        for dev in devices:
            for label, dtype, up in [("fp32", torch.float32, False),
                                     ("bf16", torch.bfloat16, False),
                                     ("bf16 weights, fp32 math", torch.float32, True)]:
                r = measure(d, dev, dtype, up)
                r.update({"model": name, "device": dev, "dtype": label})
                rows.append(r)
                print(f"{name:18s} {dev:4s} {label:24s} logits {r['logits']:.3e}  "
                      f"loss {r['loss']:.3e}  grad {r['grad_image_embeds']:.3e}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
