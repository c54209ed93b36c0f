#!/usr/bin/python3
"""Independent check of `llava-mnist export` output, with the standard library only.

Parses the exported safetensors (and reference.safetensors) with struct + json, checks the
header (F32 tensors, offsets that tile the data section), recomputes the projector's output
for the reference digits in float64 from the exported weights and config.json, and compares
it with the embeddings llava-mnist's C++ projector wrote: per digit, ||ours - C++|| / ||C++||
must be <= --tolerance (1e-6). Exit status 0 on success, 1 with a message on a mismatch.

usage: export_check.py EXPORT_DIR [--tolerance 1e-6]
"""
import argparse
import json
import math
import os
import struct
import sys

DTYPES = {"F32": ("f", 4), "F64": ("d", 8), "I64": ("q", 8)}


def read_safetensors(path):
    """{name: (shape, flat list)} and the metadata, checking the header's layout."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    metadata = header.pop("__metadata__", {})
    tensors, spans = {}, []
    for name, entry in header.items():
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise ValueError(f"{path}: tensor {name}: unexpected dtype {dtype}")
        code, size = DTYPES[dtype]
        count = math.prod(shape)
        if end - begin != count * size:
            raise ValueError(f"{path}: tensor {name}: {end - begin} bytes for shape {shape}")
        tensors[name] = (dtype, shape, list(struct.unpack(f"<{count}{code}", body[begin:end])))
        spans.append((begin, end))
    spans.sort()
    covered = 0
    for begin, end in spans:
        if begin != covered:
            raise ValueError(f"{path}: data section has a gap or overlap at byte {begin}")
        covered = end
    if covered != len(body):
        raise ValueError(f"{path}: data section is {len(body)} bytes, tensors cover {covered}")
    return tensors, metadata


def linear(weight, bias, x):
    (out, inp), w = weight[1], weight[2]
    b = bias[2]
    return [b[o] + math.fsum(w[o * inp + i] * x[i] for i in range(inp)) for o in range(out)]


def gelu(v):
    return [0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0))) for t in v]


def layers(config, tensors):
    """[(weight, bias)] in order, from the format's names; and whether a GELU sits between."""
    if "mm_projector_type" in config:  # LLaVA names
        if config["mm_projector_type"] == "linear":
            return [(tensors["model.mm_projector.weight"], tensors["model.mm_projector.bias"])]
        return [(tensors["model.mm_projector.0.weight"], tensors["model.mm_projector.0.bias"]),
                (tensors["model.mm_projector.2.weight"], tensors["model.mm_projector.2.bias"])]
    names = ["multi_modal_projector.linear_1", "multi_modal_projector.linear_2"]
    kept = [n for n in names if n + ".weight" in tensors]
    if config["llava_mnist"]["projector_type"] == "mlp2x_gelu" and config["projector_hidden_act"] != "gelu":
        raise ValueError("config.json: projector_hidden_act is not gelu")
    return [(tensors[n + ".weight"], tensors[n + ".bias"]) for n in kept]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("export_dir")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    with open(os.path.join(args.export_dir, "config.json")) as f:
        config = json.load(f)
    desc = config["llava_mnist"]
    weights_file = "mm_projector.safetensors" if "mm_projector_type" in config else "model.safetensors"
    tensors, metadata = read_safetensors(os.path.join(args.export_dir, weights_file))
    if metadata.get("format") != "pt":
        raise ValueError(f"{weights_file}: __metadata__.format is {metadata.get('format')!r}, not 'pt'")
    for name, (dtype, _, _) in tensors.items():
        if dtype != "F32":
            raise ValueError(f"{weights_file}: {name} is {dtype}, not F32")
    stack = layers(config, tensors)
    want_layers = 2 if desc["projector_type"] == "mlp2x_gelu" else 1
    if len(stack) != want_layers or len(tensors) != 2 * want_layers:
        raise ValueError(f"{weights_file}: {sorted(tensors)} for a {desc['projector_type']} projector")
    reference, _ = read_safetensors(os.path.join(args.export_dir, "reference.safetensors"))
    _, (n, pixels_per_digit), pixels = reference["pixels"]
    _, eshape, embeddings = reference["embeddings"]
    width = eshape[1] * eshape[2]
    mean, std = desc["image_mean"], desc["image_std"]
    worst = 0.0
    for d in range(n):
        x = [(p - mean) / std for p in pixels[d * pixels_per_digit:(d + 1) * pixels_per_digit]]
        y = linear(stack[0][0], stack[0][1], x)
        if len(stack) == 2:
            y = linear(stack[1][0], stack[1][1], gelu(y))
        ref = embeddings[d * width:(d + 1) * width]
        if len(y) != len(ref):
            raise ValueError(f"digit {d}: {len(y)} outputs, the reference has {len(ref)}")
        err = math.sqrt(math.fsum((a - b) ** 2 for a, b in zip(y, ref)))
        rel = err / math.sqrt(math.fsum(b * b for b in ref))
        worst = max(worst, rel)
    print(json.dumps({"export": args.export_dir, "digits": n, "max_rel_err": worst,
                      "tolerance": args.tolerance}))
    if not worst <= args.tolerance:
        print(f"FAIL: relative error {worst} over {args.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyError, ValueError, OSError) as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
