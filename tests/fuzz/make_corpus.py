#!/usr/bin/env python3
"""Writes the hand-made seeds of tests/fuzz/corpus/ (run once; the output is committed).

  tests/fuzz/make_corpus.py --tokenizer data/tokenizer/tokenizer.json --fixtures ../shared/fixtures

Each seed stays under 64 KB. The safetensors seeds are small files written here (the
fixtures' checkpoints are larger than a seed should be); config.json seeds are the
fixtures' own.
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 64 * 1024, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def byte_chars():
    """GPT-2's byte-level alphabet: byte -> printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# ---------------------------------------------------------------- tokenizer.json

def llama_small(tokenizer_path, max_merges):
    """The real Llama 3.1 tokenizer cut to its 256 byte tokens and its first merges whose
    parts are kept (ids renumbered densely), with a few of its special tokens."""
    full = json.load(open(tokenizer_path, encoding="utf-8"))
    vocab_full = full["model"]["vocab"]
    chars = byte_chars()
    keep = [chars[b] for b in range(256)]
    kept = set(keep)
    merges = []
    for m in full["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in kept and b in kept and (a + b) in vocab_full:
            merges.append([a, b])
            if a + b not in kept:
                kept.add(a + b)
                keep.append(a + b)
            if len(merges) == max_merges:
                break
    vocab = {tok: i for i, tok in enumerate(keep)}
    added = []
    for t in full["added_tokens"]:
        if t["content"] in ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                            "<|end_header_id|>", "<|eot_id|>", "<|reserved_special_token_0|>"):
            t = dict(t)
            t["id"] = len(vocab) + len(added)
            added.append(t)
    out = dict(full)
    out["added_tokens"] = added
    out["post_processor"] = None
    out["model"] = dict(full["model"])
    out["model"]["vocab"] = vocab
    out["model"]["merges"] = merges
    return out


def small_tokenizer():
    """The hand-made tokenizer of tests/tokenizer_test.cc (SmallTokenizerJson)."""
    chars = byte_chars()
    vocab = {chars[b]: b for b in range(256)}
    for i, t in enumerate(["ab", "bc", "abc", "aa", "aaaa", "xyz",
                           "".join(chars[b] for b in "a\u180eb".encode())]):
        vocab[t] = 256 + i

    def added(i, content, special, single_word=False, lstrip=False, rstrip=False,
              normalized=False):
        return {"id": i, "content": content, "single_word": single_word, "lstrip": lstrip,
                "rstrip": rstrip, "normalized": normalized, "special": special}
    return {
        "version": "1.0",
        "added_tokens": [added(263, "<s>", True), added(264, "<s>>", True),
                         added(265, "[L]", True, lstrip=True, rstrip=True),
                         added(266, "[W]", False, single_word=True),
                         added(267, "hello", False, normalized=True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split",
             "pattern": {"Regex": " ?\\p{L}+|\\p{N}|\\s+|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": True, "vocab": vocab,
                  "merges": ["b c", "a b", "a a", "aa aa", "ab c"]},
    }


def tokenizer_seeds(tokenizer_path):
    llama = llama_small(tokenizer_path, 700)
    text = json.dumps(llama, ensure_ascii=False, separators=(",", ":"))
    put("fuzz_tokenizer", "llama3_small.json", text)
    small = small_tokenizer()
    put("fuzz_tokenizer", "small.json", json.dumps(small, ensure_ascii=False))
    pairs = json.loads(json.dumps(small))
    pairs["model"]["merges"] = [m.split(" ") for m in pairs["model"]["merges"]]
    pairs["model"]["ignore_merges"] = False
    pairs["model"]["unk_token"] = "xyz"
    pairs["model"]["fuse_unk"] = True
    put("fuzz_tokenizer", "small_pairs_unk.json", json.dumps(pairs, ensure_ascii=False))
    # Encode (first byte even) and Decode (odd) inputs for the built-in tokenizer.
    put("fuzz_tokenizer", "encode_prompt",
        b"\0<|start_header_id|>user<|end_header_id|>\n\nWhat digit is this?<|eot_id|>")
    put("fuzz_tokenizer", "encode_mixed", "\0  It's 2024!\r\n\tÜber 東京 \U0001F600 don't".encode())
    put("fuzz_tokenizer", "decode_ids",
        b"\1" + b"".join(struct.pack("<I", i)[:3] for i in (0, 17, 300, 700, 956, 960, 961)))


# ---------------------------------------------------------------- safetensors

def safetensors(tensors, metadata=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    f32 = lambda *v: struct.pack("<%df" % len(v), *v)
    put("fuzz_safetensors", "projector.safetensors", safetensors([
        ("linear.bias", "F32", [4], f32(0.5, -1, 2, 0)),
        ("linear.weight", "F32", [4, 3], f32(*range(12))),
    ], {"format": "pt", "projector": "linear"}))
    put("fuzz_safetensors", "dtypes.safetensors", safetensors([
        ("a_f64", "F64", [2], struct.pack("<2d", 1.5, -2)),
        ("b_i64", "I64", [1, 2], struct.pack("<2q", -7, 1 << 40)),
        ("c_i32", "I32", [3], struct.pack("<3i", 1, 2, 3)),
        ("d_bf16", "BF16", [2], bytes([0x80, 0x3f, 0x00, 0xc0])),
        ("e_f16", "F16", [2], struct.pack("<2e", 1.0, -0.5)),
        ("f_i16", "I16", [2], struct.pack("<2h", -1, 300)),
        ("g_i8", "I8", [2], struct.pack("<2b", -1, 5)),
        ("h_u8", "U8", [3], bytes([0, 128, 255])),
        ("i_bool", "BOOL", [2], bytes([0, 1])),
        ("j_empty", "F32", [0, 5], b""),
        ("k_scalar", "F32", [], f32(3.25)),
    ]))
    put("fuzz_safetensors", "empty.safetensors", safetensors([], {}))


# ---------------------------------------------------------------- IDX (MNIST)

def idx_images(pixels, n, rows, cols):
    return struct.pack(">IIII", 0x803, n, rows, cols) + bytes(pixels)


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def mnist_seeds():
    # Mode byte 0: the rest is one file, read as images and as labels (and gunzipped);
    # 1: a pair, 2 bytes (little-endian) giving the images file's length, then both.
    imgs = idx_images([(i * 37) % 256 for i in range(3 * 4 * 5)], 3, 4, 5)
    labels = idx_labels([7, 0, 9])
    put("fuzz_mnist_idx", "images", b"\0" + imgs)
    put("fuzz_mnist_idx", "labels", b"\0" + labels)
    put("fuzz_mnist_idx", "images_gz", b"\0" + gzip.compress(imgs, mtime=0))
    put("fuzz_mnist_idx", "labels_gz_two_members",
        b"\0" + gzip.compress(labels[:5], mtime=0) + gzip.compress(labels[5:], mtime=0))
    put("fuzz_mnist_idx", "pair", b"\1" + struct.pack("<H", len(imgs)) + imgs + labels)
    gz = gzip.compress(imgs, mtime=0)
    put("fuzz_mnist_idx", "pair_gz",
        b"\1" + struct.pack("<H", len(gz)) + gz + gzip.compress(labels, mtime=0))


# ---------------------------------------------------------------- PNG

def png(width, height, color_type, bit_depth, rows, plte=None, trns=None, interlace=0):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0,
                                      interlace))
    if plte is not None:
        out += chunk(b"PLTE", plte)
    if trns is not None:
        out += chunk(b"tRNS", trns)
    raw = b"".join(b"\0" + r for r in rows)
    out += chunk(b"IDAT", zlib.compress(raw))
    out += chunk(b"IEND", b"")
    return out


def png_seeds():
    w, h = 12, 10
    gray = [bytes((255 - 40 * (2 < x < 9 and 2 < y < 8)) for x in range(w)) for y in range(h)]
    put("fuzz_png", "gray8.png", png(w, h, 0, 8, gray))
    rgb = [bytes(v for x in range(w) for v in (x * 20, y * 25, 128)) for y in range(h)]
    put("fuzz_png", "rgb8.png", png(w, h, 2, 8, rgb))
    rgba16 = [b"".join(struct.pack(">4H", x * 5000, y * 6000, 30000, 65535 * (x > 3))
                       for x in range(w)) for y in range(h)]
    put("fuzz_png", "rgba16.png", png(w, h, 6, 16, rgba16))
    pal = [bytes(((x + y) % 4) << 6 for x in range((w + 3) // 4)) for y in range(h)]
    put("fuzz_png", "palette2_trns.png",
        png(w, h, 3, 2, pal, plte=bytes([0, 0, 0, 255, 255, 255, 90, 90, 90, 200, 10, 10]),
            trns=bytes([255, 0])))
    ga = [bytes(v for x in range(w) for v in (x * 20, 255 - y * 20)) for y in range(h)]
    put("fuzz_png", "gray_alpha8_interlaced.png", png(w, h, 4, 8, ga, interlace=1))
    bits = [bytes([0b10110011, 0b01000000]) for _ in range(h)]
    put("fuzz_png", "gray1.png", png(w, h, 0, 1, bits))


# ---------------------------------------------------------------- config.json

def config_seeds(fixtures):
    for name, path in [
            ("llama31_8b_instruct.json", "llama-3.1-8b-instruct.config.json"),
            ("tiny_llama3.json", "tiny-llama3/config.json"),
            ("tiny_llama3_tied.json", "tiny-llama3-tied/config.json")]:
        put("fuzz_llama_config", name, open(os.path.join(fixtures, path), "rb").read())
    # Found by the fuzzer (now refused by Validate): the parameter count overflows int64.
    put("fuzz_llama_config", "params_overflow.json",
        '{"model_type":"llama","vocab_size":1,"hidden_size":4611686018427387904,'
        '"intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":2}')


# ---------------------------------------------------------------- job specs, RPCs

def encode(message, text):
    """A message in protobuf's text format -> binary, with protoc and protos/llava.proto."""
    protos = os.path.join(ROOT, "..", "..", "protos")
    return subprocess.run(
        ["protoc", "--proto_path=" + protos, "--encode=llava.v1." + message, "llava.proto"],
        input=text.encode(), stdout=subprocess.PIPE, check=True).stdout


def job_spec_seeds():
    # First byte: bit 0 JSON, (byte >> 1) % 3: SubmitJobRequest, TrainSpec, EvalSpec.
    launch = {"projector": "mlp2x_gelu", "projectorHidden": 1024, "lr": 0.002,
              "schedule": "cosine", "warmupRatio": 0.03, "batchSize": 16, "worldSize": 2,
              "trainDigits": 9000, "checkpointEverySteps": 50,
              "questions": ["What digit is this?", "Which digit is shown?", "Name the digit.",
                            "What number is shown here?", "Identify the digit."]}
    put("fuzz_job_spec", "submit_train.json", b"\x01" + json.dumps({"train": launch}).encode())
    put("fuzz_job_spec", "submit_eval.json",
        b"\x01" + json.dumps({"eval": {"checkpoint": "train-000001", "workers": 2},
                               "waitForWorkers": True}).encode())
    put("fuzz_job_spec", "train_readme.json",
        b"\x03" + b'{"projector": "mlp2x_gelu", "projectorHidden": 1024, "batchSize": 16, '
                   b'"worldSize": 2}')
    put("fuzz_job_spec", "train_experiment.json",
        b"\x03" + json.dumps({"projector": "linear", "batchSize": 1, "trainDigits": 1000,
                               "gradAccum": 4, "epochs": 3, "maxSteps": 100, "seed": "7",
                               "promptStyle": "experiment", "optimizer": "adamw",
                               "answerTemplates": ["The digit is {digit}."]}).encode())
    put("fuzz_job_spec", "eval.json",
        b"\x05" + json.dumps({"checkpoint": "train-000001/step-000050",
                               "questions": ["What digit is this?", "What is this number?"],
                               "evalDigits": -1, "batchSize": 200, "maxNewTokens": 8,
                               "workers": 2, "maxRestarts": 1}).encode())
    # Former crashes, fixed (issue 15): the global batch
    # overflows, the step count overflows.
    put("fuzz_job_spec", "known_global_batch_overflow.json",
        b"\x03" + b'{"batchSize": "4611686018427387904", "gradAccum": 4}')
    put("fuzz_job_spec", "known_epochs_overflow.json",
        b"\x03" + b'{"epochs": "3674937269420510877"}')
    put("fuzz_job_spec", "submit_train.bin", b"\x00" + encode(
        "SubmitJobRequest", 'train { projector: "mlp2x_gelu" projector_hidden: 64 '
        'batch_size: 8 grad_accum: 2 world_size: 2 train_digits: -1 epochs: 2 '
        'questions: "What digit is this?" }'))
    put("fuzz_job_spec", "train.bin", b"\x02" + encode(
        "TrainSpec", 'lr: 0.001 schedule: "cosine" warmup_ratio: 0.1 max_steps: 5 seed: 3'))
    put("fuzz_job_spec", "eval.bin", b"\x04" + encode(
        "EvalSpec", 'checkpoint: "train-000001" eval_digits: 100 questions: "Name the digit."'))


HANDLERS = ["SubmitJobRequest", "GetJobRequest", "ListJobsRequest", "CancelJobRequest",
            "RegisterWorkerRequest", "HeartbeatRequest", "TaskResultRequest", "GetShardRequest",
            "ListWorkersRequest", "LeaveWorkerRequest", "StoreSetRequest", "StoreGetRequest",
            "ListCheckpointsRequest"]
TICK = len(HANDLERS)


def records(calls):
    """[(request message, text) or (TICK, seconds)] -> the fuzz_coordinator input."""
    out = b""
    for message, text in calls:
        if message == TICK:
            out += bytes([TICK]) + struct.pack("<H", text) + b"\0" * text
            continue
        body = encode(message, text)
        out += bytes([HANDLERS.index(message)]) + struct.pack("<H", len(body)) + body
    return out


def coordinator_seeds():
    register = [("RegisterWorkerRequest",
                 'info { worker_id: "w%d" collective_host: "127.0.0.1" device: "cpu" '
                 'model: "demo-lm" collective: "gloo" train_images: 9000 test_images: 1000 '
                 'hidden_size: 128 }' % i) for i in range(2)]
    ref = 'ref { job_id: "%s" attempt: 1 rank: %d }'
    train = register + [
        ("SubmitJobRequest", 'train { batch_size: 4 world_size: 2 train_digits: 64 '
                             'max_steps: 3 checkpoint_every_steps: 2 }'),
        ("HeartbeatRequest", 'worker_id: "w0" session_id: "w0#1"'),
        ("HeartbeatRequest", 'worker_id: "w1" session_id: "w1#2"'),
        ("GetShardRequest", ref % ("train-000001", 0) + " epoch: 0"),
        ("GetShardRequest", ref % ("train-000001", 1) + " epoch: 0"),
        ("StoreSetRequest", 'key: "train-000001/1/nccl" value: "id"'),
        ("StoreGetRequest", 'key: "train-000001/1/nccl"'),
        ("HeartbeatRequest", 'worker_id: "w0" session_id: "w0#1" running { job_id: '
                             '"train-000001" attempt: 1 rank: 0 } steps { step: 1 loss: 2.5 '
                             'lr: 0.001 samples_per_s: 30 } steps { step: 2 loss: 2.1 }'),
        ("TaskResultRequest", 'worker_id: "w0" session_id: "w0#1" ' + ref % ("train-000001", 0)
         + ' ok: true step: 3'),
        ("TaskResultRequest", 'worker_id: "w1" session_id: "w1#2" ' + ref % ("train-000001", 1)
         + ' ok: true step: 3'),
        ("GetJobRequest", 'job_id: "train-000001" include_history: true'),
        ("ListJobsRequest", ""), ("ListWorkersRequest", ""),
        ("ListCheckpointsRequest", 'job_id: "train-000001"'),
        ("LeaveWorkerRequest", 'worker_id: "w1" session_id: "w1#2" reason: "shutdown"'),
    ]
    put("fuzz_coordinator", "train_job", records(train))
    failing = register + [
        ("SubmitJobRequest", 'train { world_size: 2 max_restarts: 1 }'),
        ("HeartbeatRequest", 'worker_id: "w0" session_id: "w0#1"'),
        ("TaskResultRequest", 'worker_id: "w1" session_id: "w1#2" ' + ref % ("train-000001", 1)
         + ' ok: false retryable: true error: "collective timed out" step: 1'),
        (TICK, 120),
        ("RegisterWorkerRequest", 'info { worker_id: "w1" train_images: 9000 }'),
        ("CancelJobRequest", 'job_id: "train-000001"'),
    ]
    put("fuzz_coordinator", "failed_rank", records(failing))
    def report(index):
        """An eval shard's report as EvalReport::ToJson writes it (the fields it reads)."""
        samples = [{"index": index, "question": q, "label": 7, "answer": "The digit is 7.",
                    "predicted": 7} for q in range(2)]
        return json.dumps({"format": "llava-mnist eval report", "version": 1,
                           "metadata": {}, "num_classes": 10,
                           "questions": ["What digit is this?", "What is this number?"],
                           "totals": {"samples": 2, "correct": 2}, "samples": samples})
    evaluation = register + [
        ("SubmitJobRequest", 'eval { checkpoint: "train-000900" eval_digits: 20 workers: 2 }'),
        ("HeartbeatRequest", 'worker_id: "w0" session_id: "w0#1"'),
        ("HeartbeatRequest", 'worker_id: "w1" session_id: "w1#2" running { job_id: '
                             '"eval-000001" attempt: 1 rank: 1 } eval_images_done: 5'),
        ("TaskResultRequest", 'worker_id: "w0" session_id: "w0#1" ' + ref % ("eval-000001", 0)
         + ' ok: true eval_report_json: %s' % json.dumps(report(0))),
        ("TaskResultRequest", 'worker_id: "w1" session_id: "w1#2" ' + ref % ("eval-000001", 1)
         + ' ok: true eval_report_json: %s' % json.dumps(report(10))),
        ("GetJobRequest", 'job_id: "eval-000001"'),
        ("ListCheckpointsRequest", ""),
    ]
    put("fuzz_coordinator", "eval_job", records(evaluation))
    # Former crashes, fixed (issue 15): a worker's
    # train_images of 2^40 (GetShard allocates 8 TB), GetShard's epoch * steps overflow.
    worker = 'device: "cpu" collective: "gloo" hidden_size: 128'
    put("fuzz_coordinator", "known_train_images_2e40", records([
        ("RegisterWorkerRequest", 'info { worker_id: "w0" train_images: 1099511627776 %s }'
         % worker),
        ("SubmitJobRequest", 'train { train_digits: -1 }'),
        ("GetShardRequest", ref % ("train-000001", 0) + " epoch: 0")]))
    put("fuzz_coordinator", "known_shard_epoch_overflow", records([
        ("RegisterWorkerRequest", 'info { worker_id: "w0" train_images: 9000 %s }' % worker),
        ("SubmitJobRequest", 'train { train_digits: 100 }'),
        ("GetShardRequest", ref % ("train-000001", 0) + " epoch: 4611686018427387904")]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--fixtures", required=True)
    args = ap.parse_args()
    tokenizer_seeds(args.tokenizer)
    safetensors_seeds()
    mnist_seeds()
    png_seeds()
    config_seeds(args.fixtures)
    job_spec_seeds()
    coordinator_seeds()


if __name__ == "__main__":
    main()
