"""Peer benchmark for `cargo xtask bench`: one AttnLRP relevance pass with LXT 2.1 (efficient
mode) + PyTorch on the CPU, the same measurement as `scalpel bench --relevance`.

Same model file (SmolLM2 Q4_1 GGUF dequantized to float32 by transformers), same wiki tokens,
same thread count. The pass: forward with inputs_embeds requiring grad, backward from the
greedy next token's logit, then input relevance and W * grad for every decoder-block Linear
(kept, as Scalpel keeps them). LXT's rules are applied by the fixture script's `apply_rules`,
so the benchmark and the parity fixtures use the same LXT code. Prints one JSON line.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from make_relevance_fixtures import apply_rules  # noqa: E402
from peer_transformers import wiki_text  # noqa: E402


def rss(reset: bool):
    """(VmRSS, VmHWM) in bytes, resetting the high-water mark first when asked (Linux)."""
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def relevance_pass(model, ids, linears, sync=lambda: None) -> float:
    """Seconds of one pass: forward with inputs_embeds requiring grad, backward from the last
    position's top logit, input relevance to the host and W * grad of every Linear in `linears`
    (kept, as Scalpel keeps them). `sync` waits for an asynchronous device (CUDA)."""
    sync()
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    embeds = model.model.embed_tokens(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, use_cache=False).logits
    logits[0, -1].max().backward()
    tokens = (embeds * embeds.grad).sum(-1)[0].tolist()
    weights = [m.weight.detach() * m.weight.grad for m in linears]
    sync()
    elapsed = time.perf_counter() - start
    del weights, tokens, logits, embeds
    return elapsed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", default="assets/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--model", type=Path, help="a Hugging Face folder (config.json, safetensors, "
                   "tokenizer.json) instead of --gguf, e.g. from make_large_checkpoints.py")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="the dtype the model runs in (--model only)")
    p.add_argument("--corpus", default="assets/wiki.utf8")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    apply_rules("attnlrp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if a.model:
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_file=str(a.model / "tokenizer.json"))
        model = AutoModelForCausalLM.from_pretrained(
            a.model, dtype=getattr(torch, a.dtype), attn_implementation="eager"
        ).eval()
    else:
        path = Path(a.gguf)
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
        ).eval()
    text = wiki_text(Path(a.corpus).read_text(encoding="utf-8"))
    ids = tok(text[: a.tokens * 16], add_special_tokens=False, return_tensors="pt").input_ids[:, : a.tokens]
    linears = [m for name, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear)]

    def once():
        return relevance_pass(model, ids, linears)

    before, _ = rss(True)
    once()
    _, peak = rss(False)
    seconds = statistics.median(once() for _ in range(a.repeats))
    print(json.dumps({
        "impl": f"LXT 2.1 efficient AttnLRP + pytorch {torch.__version__}",
        "device": "CPU", "threads": torch.get_num_threads(), "tokens": a.tokens,
        "model": str(a.model or a.gguf), "dtype": str(model.dtype).removeprefix("torch."),
        "relevance_seconds": seconds, "repeats": a.repeats,
        "memory": {"rss_before_bytes": before, "peak_rss_bytes": peak, "pass_extra_bytes": peak - before},
    }))


if __name__ == "__main__":
    main()
