#!/usr/bin/env python3
"""The transformers reference for `llava-mnist bench`: the same work, written as a user
of transformers would write it, on the same GPU.

Model: the published Llama-3.1-8B-Instruct config with random bf16 weights (the time of a
step does not depend on the weight values), SDPA attention, every weight frozen.
Prompt: the experiment's shape, 24 tokens with the image embedding at position 8 and the
7 answer tokens last.

- train: a linear projector (784 -> hidden, float32) maps a batch of digits to image
  embeddings, spliced into the token embeddings; `model(inputs_embeds, labels)` (full-
  sequence logits, transformers' shifted loss on the 7 answer tokens), backward to the
  projector, AdamW step. Timed per step.
- eval: batched greedy `generate` from the spliced embeddings, 20 new tokens forced (no
  EOS). Timed per batch.

Timings are medians over repeated steps after warm-up, with torch.cuda.synchronize()
around each. Prints a table and writes JSON (--out).

  python3 bench/hf_reference.py --config ../shared/fixtures/llama-3.1-8b-instruct.config.json
"""
import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PROMPT_LEN = 24
IMAGE_POS = 8
ANSWER_LEN = 7


def sync():
    torch.cuda.synchronize()


def make_model(config_path, device):
    cfg = LlamaConfig.from_json_file(config_path)
    cfg._attn_implementation = "sdpa"
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16,
                                              attn_implementation="sdpa")
    model.eval()  # no dropout (there is none in Llama), as a frozen LM is run
    for p in model.parameters():
        p.requires_grad_(False)
    sync()
    return model, time.perf_counter() - t0


def batch_inputs(model, batch, device, gen):
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, PROMPT_LEN), device=device, generator=gen)
    labels = torch.full_like(ids, -100)
    labels[:, -ANSWER_LEN:] = ids[:, -ANSWER_LEN:]
    pixels = torch.rand(batch, 784, device=device, generator=gen)
    return ids, labels, pixels


def splice(model, ids, image):
    embeds = model.get_input_embeddings()(ids)  # [B, T, D] bf16
    return torch.cat([embeds[:, :IMAGE_POS], image.to(embeds.dtype).unsqueeze(1),
                      embeds[:, IMAGE_POS + 1:]], 1)


def timed(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def bench_train(model, batch, warmup, steps, device):
    gen = torch.Generator(device=device).manual_seed(1)
    projector = torch.nn.Linear(784, model.config.hidden_size).to(device)
    opt = torch.optim.AdamW(projector.parameters(), lr=1e-3)
    ids, labels, pixels = batch_inputs(model, batch, device, gen)

    def step():
        image = projector(pixels)  # [B, D] f32
        out = model(inputs_embeds=splice(model, ids, image), labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    times = timed(step, warmup, steps)
    med = statistics.median(times)
    return {"mode": "train", "batch": batch, "median_s": med, "per_s": batch / med,
            "min_s": min(times), "max_s": max(times), "steps": steps,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30}


def bench_eval(model, batch, warmup, steps, device, new_tokens):
    gen = torch.Generator(device=device).manual_seed(2)
    projector = torch.nn.Linear(784, model.config.hidden_size).to(device)
    ids, _, pixels = batch_inputs(model, batch, device, gen)
    model.generation_config.eos_token_id = None  # forced: every row runs the whole budget
    model.generation_config.pad_token_id = 0

    def step():
        with torch.no_grad():
            embeds = splice(model, ids, projector(pixels))
            out = model.generate(inputs_embeds=embeds,
                                 attention_mask=torch.ones(ids.shape, device=device,
                                                           dtype=torch.long),
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, use_cache=True)
            assert out.shape[1] == new_tokens, out.shape

    torch.cuda.reset_peak_memory_stats()
    times = timed(step, warmup, steps)
    med = statistics.median(times)
    return {"mode": "eval", "batch": batch, "median_s": med, "per_s": batch / med,
            "min_s": min(times), "max_s": max(times), "steps": steps,
            "new_tokens": new_tokens,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30}


def ints(text):
    return [int(x) for x in text.split(",") if x]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="../shared/fixtures/llama-3.1-8b-instruct.config.json")
    ap.add_argument("--train_batches", default="16,64")
    ap.add_argument("--eval_batches", default="100,500")
    ap.add_argument("--train_steps", type=int, default=10)
    ap.add_argument("--eval_steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--new_tokens", type=int, default=20)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    device = "cuda"
    model, load_s = make_model(args.config, device)
    rows = []
    for b in ints(args.train_batches):
        rows.append(bench_train(model, b, args.warmup, args.train_steps, device))
    for b in ints(args.eval_batches):
        rows.append(bench_eval(model, b, 1, args.eval_steps, device, args.new_tokens))
    import transformers
    result = {"what": "transformers reference", "device": torch.cuda.get_device_name(),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "model_load_s": load_s, "rows": rows}
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{result['device']}, random 8B made in {load_s:.1f} s")
    print(f"{'mode':6s} {'batch':>6s} {'median ms':>10s} {'per s':>9s} {'peak GiB':>9s}")
    for r in rows:
        print(f"{r['mode']:6s} {r['batch']:6d} {1e3 * r['median_s']:10.1f} "
              f"{r['per_s']:9.1f} {r['peak_gib']:9.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
