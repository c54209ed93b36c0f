#!/usr/bin/env python3
"""GPU-machine check of `llava-mnist export` with the Python ecosystem's own tools.

For each projector kind (linear, mlp2x_gelu at Llama 3.1 8B's width, D = 4096), writes a
llava-mnist checkpoint with seeded random weights (or takes --checkpoint files), runs
`llava-mnist export --format hf` and `--format llava` with --reference_digits (the C++
projector's embeddings of real test digits), then loads:
  - hf, mlp2x_gelu: transformers' LlavaMultiModalProjector built from a LlavaConfig whose
    vision hidden size is 784 and projector_hidden_act "gelu" (from the export's config.json);
  - hf, linear: torch.nn.Linear from multi_modal_projector.linear_1 (transformers has no
    single-linear projector);
  - llava: torch.nn.Sequential(Linear, GELU, Linear) or torch.nn.Linear, LLaVA's
    build_vision_projector modules, from model.mm_projector.*;
feeds them the normalized digits in float32 (TF32 off) on each device and compares with
the C++ embeddings: per digit ||torch - C++|| / ||C++||, the max over digits must be
<= 1e-6. Prints one JSON line per case; exits 1 if any case fails.

  python3 tests/gpu/export_check.py --bin build-gpu/bin/llava-mnist --data_dir data/mnist
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file


def make_checkpoint(path, kind, dim, seed):
    """A llava-mnist checkpoint (common/train_checkpoint.h's layout) with random weights."""
    gen = torch.Generator().manual_seed(seed)
    hidden = dim if kind == "mlp2x_gelu" else 0
    tensors = {
        "projector.fc1.weight": torch.randn(dim, 784, generator=gen) / 28,
        "projector.fc1.bias": torch.randn(dim, generator=gen) / 28,
    }
    if kind == "mlp2x_gelu":
        tensors["projector.fc2.weight"] = torch.randn(dim, dim, generator=gen) / 64
        tensors["projector.fc2.bias"] = torch.randn(dim, generator=gen) / 64
    config = {"type": kind, "input_dim": 784, "output_dim": dim, "hidden_dim": hidden,
              "image_tokens": 1, "input_mean": 0.1307, "input_std": 0.3081}
    save_file(tensors, path, metadata={
        "format": "llava-mnist-projector", "version": "1", "projector_config": json.dumps(config),
        "train_state": json.dumps({"step": 0}), "model": "synthetic:llama-3.1-8b"})


def export(binary, checkpoint, fmt, out, data_dir, digits):
    subprocess.run([binary, "export", f"--checkpoint={checkpoint}", f"--format={fmt}",
                    f"--out={out}", f"--reference_digits={digits}", f"--data_dir={data_dir}"],
                   check=True)


def strip(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_hf(out):
    from transformers import LlavaConfig
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
    with open(os.path.join(out, "config.json")) as f:
        raw = json.load(f)
    state = load_file(os.path.join(out, "model.safetensors"))
    if raw["llava_mnist"]["projector_type"] == "linear":
        weight = state["multi_modal_projector.linear_1.weight"]
        module = torch.nn.Linear(weight.shape[1], weight.shape[0])
        module.load_state_dict(strip(state, "multi_modal_projector.linear_1."))
        return module, raw, "torch.nn.Linear(multi_modal_projector.linear_1)"
    config = LlavaConfig.from_pretrained(out)  # the export's config.json
    assert config.vision_config.hidden_size == 784, config.vision_config.hidden_size
    assert config.projector_hidden_act == "gelu", config.projector_hidden_act
    module = LlavaMultiModalProjector(config)
    module.load_state_dict(strip(state, "multi_modal_projector."), strict=True)
    return module, raw, "transformers.LlavaMultiModalProjector"


def load_llava(out):
    with open(os.path.join(out, "config.json")) as f:
        raw = json.load(f)
    state = load_file(os.path.join(out, "mm_projector.safetensors"))
    inner = strip(state, "model.mm_projector.")
    if raw["mm_projector_type"] == "linear":
        module = torch.nn.Linear(raw["mm_hidden_size"], raw["hidden_size"])
        name = "torch.nn.Linear(model.mm_projector)"
    else:
        hidden = raw["mm_projector_hidden_size"]
        module = torch.nn.Sequential(torch.nn.Linear(raw["mm_hidden_size"], hidden), torch.nn.GELU(),
                                     torch.nn.Linear(hidden, raw["hidden_size"]))
        name = "torch.nn.Sequential(Linear, GELU, Linear)"
    module.load_state_dict(inner, strict=True)
    return module, raw, name


def compare(module, raw, out, device):
    desc = raw["llava_mnist"]
    ref = load_file(os.path.join(out, "reference.safetensors"))
    pixels, want = ref["pixels"], ref["embeddings"]  # [N, 784] in [0, 1]; [N, k, D]
    module = module.to(device=device, dtype=torch.float32).eval()
    x = ((pixels.to(device) - desc["image_mean"]) / desc["image_std"]).float()
    with torch.no_grad():
        got = module(x).float().cpu().view_as(want)
    diff = (got.double() - want.double()).flatten(1)
    per_digit = diff.norm(dim=1) / want.double().flatten(1).norm(dim=1)
    max_abs = diff.abs().max().item() / want.double().abs().max().item()
    return per_digit.max().item(), max_abs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="build-gpu/bin/llava-mnist")
    parser.add_argument("--data_dir", default="data/mnist")
    parser.add_argument("--digits", type=int, default=32)
    parser.add_argument("--dim", type=int, default=4096, help="the LLM's hidden size D")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="llava-mnist checkpoints to export (default: two random ones)")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    work = tempfile.mkdtemp(prefix="export_check_")
    checkpoints = list(args.checkpoint)
    if not checkpoints:
        for seed, kind in enumerate(["linear", "mlp2x_gelu"]):
            path = os.path.join(work, f"{kind}.safetensors")
            make_checkpoint(path, kind, args.dim, seed)
            checkpoints.append(path)
    failed = False
    for i, checkpoint in enumerate(checkpoints):
        for fmt, loader in (("hf", load_hf), ("llava", load_llava)):
            out = os.path.join(work, f"{i}-{fmt}")
            export(args.bin, checkpoint, fmt, out, args.data_dir, args.digits)
            module, raw, name = loader(out)
            for device in devices:
                rel, max_abs = compare(module, raw, out, device)
                ok = rel <= args.tolerance
                failed |= not ok
                print(json.dumps({"checkpoint": checkpoint, "format": fmt, "loader": name,
                                  "projector": raw["llava_mnist"]["projector_type"], "device": device,
                                  "digits": args.digits, "max_rel_err": rel,
                                  "max_abs_err_over_max_abs": max_abs, "ok": ok,
                                  "torch": torch.__version__}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
