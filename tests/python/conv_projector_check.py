#!/usr/bin/python3
"""A conv_mlp projector checkpoint read with Python's standard library alone.

Parses the checkpoint (safetensors: an 8-byte header length, a JSON header, the data),
takes the projector's config from its metadata and its tensors by their PyTorch names
(projector.conv1.weight [32, 1, 3, 3], ..., projector.fc2.bias), recomputes in float64 the
embeddings of the digits in REFERENCE (pixels [N, 784] in [0, 1]; embeddings [N, k, D] from
llava-mnist's C++ projector) as torch would (conv 3x3 padding 1, exact GELU, 2x2 max pool,
twice; flatten channel-major; Linear, GELU, Linear) and compares: per digit
||ours - C++|| / ||C++|| must be <= --tolerance. Exit status 0 on success, 1 otherwise.

usage: conv_projector_check.py CHECKPOINT REFERENCE [--tolerance 1e-5]
"""
import argparse
import json
import math
import struct
import sys

DTYPES = {"F32": ("f", 4), "F64": ("d", 8), "I64": ("q", 8), "F16": ("e", 2)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        code, size = DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        count = math.prod(entry["shape"])
        if end - begin != count * size:
            raise ValueError(f"{path}: {name}: {end - begin} bytes for shape {entry['shape']}")
        tensors[name] = (entry["shape"], list(struct.unpack(f"<{count}{code}", body[begin:end])))
    return tensors, metadata


def gelu(v):
    return [0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0))) for t in v]


def conv3x3(planes, side, weight, bias):
    """planes: in_ch flat lists side*side -> out_ch flat lists (padding 1, stride 1)."""
    (out_ch, in_ch, _, _), w = weight
    b = bias[1]
    wide = side + 2
    padded = []
    for plane in planes:
        p = [0.0] * (wide * wide)
        for y in range(side):
            p[(y + 1) * wide + 1:(y + 1) * wide + 1 + side] = plane[y * side:(y + 1) * side]
        padded.append(p)
    out = []
    for o in range(out_ch):
        acc = [b[o]] * (side * side)
        for i in range(in_ch):
            p = padded[i]
            for ky in range(3):
                for kx in range(3):
                    k = w[((o * in_ch + i) * 3 + ky) * 3 + kx]
                    for y in range(side):
                        row = p[(y + ky) * wide + kx:(y + ky) * wide + kx + side]
                        s = y * side
                        acc[s:s + side] = [a + k * r for a, r in zip(acc[s:s + side], row)]
        out.append(acc)
    return out


def pool2(planes, side):
    half = side // 2
    return [[max(p[(2 * y) * side + 2 * x], p[(2 * y) * side + 2 * x + 1],
                 p[(2 * y + 1) * side + 2 * x], p[(2 * y + 1) * side + 2 * x + 1])
             for y in range(half) for x in range(half)] for p in planes]


def linear(weight, bias, x):
    (out, inp), w = weight
    b = bias[1]
    return [b[o] + math.fsum(w[o * inp + i] * x[i] for i in range(inp)) for o in range(out)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("reference")
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args()
    tensors, metadata = read_safetensors(args.checkpoint)
    config = json.loads(metadata["projector_config"])
    if config["type"] != "conv_mlp":
        sys.exit(f"{args.checkpoint}: projector type {config['type']}, expected conv_mlp")
    t = {name[len("projector."):]: v for name, v in tensors.items() if name.startswith("projector.")}
    want = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
            "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    if sorted(t) != sorted(want):
        sys.exit(f"{args.checkpoint}: projector tensors {sorted(t)}, expected {sorted(want)}")
    side = math.isqrt(config["input_dim"])
    ref, _ = read_safetensors(args.reference)
    (n, dim), pixels = ref["pixels"]
    (_, k, d), embeddings = ref["embeddings"]
    mean, std = config["input_mean"], config["input_std"]
    for row in range(n):
        x = [(v - mean) / std for v in pixels[row * dim:(row + 1) * dim]]
        h = pool2([gelu(p) for p in conv3x3([x], side, t["conv1.weight"], t["conv1.bias"])], side)
        h = pool2([gelu(p) for p in conv3x3(h, side // 2, t["conv2.weight"], t["conv2.bias"])], side // 2)
        flat = [v for p in h for v in p]
        y = linear(t["fc2.weight"], t["fc2.bias"], gelu(linear(t["fc1.weight"], t["fc1.bias"], flat)))
        theirs = embeddings[row * k * d:(row + 1) * k * d]
        err = math.sqrt(math.fsum((a - b) ** 2 for a, b in zip(y, theirs)))
        norm = math.sqrt(math.fsum(b * b for b in theirs))
        print(f"digit {row}: relative error {err / norm:.2e}")
        if not err <= args.tolerance * norm:
            sys.exit(f"digit {row}: relative error {err / norm:.2e} > {args.tolerance}")
    print(f"ok: {n} digits, {len(want)} tensors of a conv_mlp projector (k={k}, D={d})")


if __name__ == "__main__":
    main()
