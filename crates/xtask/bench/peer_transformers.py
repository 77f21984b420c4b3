"""Peer benchmark for `cargo xtask bench`: the same measurements as `scalpel bench`, with PyTorch +
Hugging Face transformers on the CPU, same model file, same thread count.

The model is the SmolLM2 Q4_1 GGUF, dequantized to float32 by transformers' GGUF loader (so both
sides run the same f32 weights). Prints one JSON line.

Needs: torch, transformers, gguf, accelerate (any recent versions).
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def wiki_text(raw: str) -> str:
    # Same reconstruction as scalpel::eval::corpus::wiki_text.
    articles, current = [], None
    for line in raw.split("\n"):
        if line.startswith("<doc"):
            current = []
        elif line.rstrip() == "</doc>":
            if current is not None:
                text = "\n".join(current).strip()
                if text:
                    articles.append(text)
            current = None
        elif current is not None:
            current.append(line)
    return "\n\n".join(articles)


def forward_and_generation(model, window, prompt, gen_tokens, repeats, sync=lambda: None):
    """Median seconds of one forward over `window` with every logit copied to the host, and
    median tokens/s of greedy generation of exactly `gen_tokens` after `prompt`, each after a
    warm-up. `sync` waits for an asynchronous device (CUDA)."""

    def forward():
        start = time.perf_counter()
        with torch.inference_mode():
            model(window).logits.cpu()
        return time.perf_counter() - start

    def generation():
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(prompt, do_sample=False, max_new_tokens=gen_tokens, min_new_tokens=gen_tokens)
        sync()
        return (out.shape[1] - prompt.shape[1]) / (time.perf_counter() - start)

    forward()
    forward_s = statistics.median(forward() for _ in range(repeats))
    generation()
    return forward_s, statistics.median(generation() for _ in range(repeats))


def batch_generation(model, ids, n, gen_tokens, repeats, pad_id):
    """Median tokens/s of greedy generation of exactly `gen_tokens` for `n` prompts as one
    left-padded batch, prompt `i` being the next `8 + (7 i mod 25)` tokens of `ids` (the lengths
    `scalpel bench --batch` takes)."""
    prompts, start = [], 0
    for i in range(n):
        length = 8 + (7 * i) % 25
        prompts.append(ids[0, start:start + length].tolist())
        start += length
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])

    def generation():
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=attention_mask, do_sample=False,
                                 max_new_tokens=gen_tokens, min_new_tokens=gen_tokens,
                                 pad_token_id=pad_id)
        return n * (out.shape[1] - width) / (time.perf_counter() - start)

    generation()
    return statistics.median(generation() for _ in range(repeats))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", default="assets/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--corpus", default="assets/wiki.utf8")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--forward-tokens", type=int, default=512)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, help="time batched generation of this many prompts instead")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    path = Path(a.gguf)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model.eval()

    text = wiki_text(Path(a.corpus).read_text(encoding="utf-8"))
    ids = tok(text[: a.forward_tokens * 16], add_special_tokens=False, return_tensors="pt").input_ids
    window = ids[:, : a.forward_tokens]
    impl = f"pytorch {torch.__version__} + transformers {transformers.__version__}"
    if a.batch:
        ids = tok(text[: a.batch * 33 * 16], add_special_tokens=False, return_tensors="pt").input_ids
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        tps = batch_generation(model, ids, a.batch, a.gen_tokens, a.repeats, pad_id)
        print(json.dumps({
            "impl": impl, "device": "CPU", "threads": torch.get_num_threads(), "batch": a.batch,
            "gen_tokens": a.gen_tokens, "batch_tokens_per_second": tps, "repeats": a.repeats,
        }))
        return

    prompt = tok("The capital of France is", add_special_tokens=False, return_tensors="pt").input_ids
    forward_s, tps = forward_and_generation(model, window, prompt, a.gen_tokens, a.repeats)
    print(json.dumps({
        "impl": impl,
        "device": "CPU", "threads": torch.get_num_threads(),
        "forward_tokens": a.forward_tokens, "forward_seconds": forward_s,
        "gen_tokens": a.gen_tokens, "gen_tokens_per_second": tps, "repeats": a.repeats,
    }))


if __name__ == "__main__":
    main()
