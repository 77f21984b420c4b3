"""Peer of the GPU benchmark (gpu_bench.py): the measurements of `scalpel bench` made with PyTorch +
transformers (eager attention, float32) and, for relevance, LXT 2.1's efficient AttnLRP, on one
torch device (CUDA on the GPU machine, the CPU for the small local run). Prints one JSON line.

    peer_gpu.py forward   --model DIR --corpus FILE --tokens N --gen-tokens G --repeats R --device D
    peer_gpu.py relevance --model DIR --corpus FILE --tokens N --repeats R --device D

The token ids come from the checkpoint's own tokenizer.json through the `tokenizers` library (the
same Rust tokenizer Scalpel uses) from the same corpus prefix, so both sides run the same ids.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from peer_transformers import forward_and_generation, wiki_text  # noqa: E402

# Scalpel's `bench` prompt (crates/cli/src/commands/bench.rs).
PROMPT = "The capital of France is"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load(a, device):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    tok = Tokenizer.from_file(str(Path(a.model) / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(
        a.model, dtype=getattr(torch, a.dtype), attn_implementation="eager"
    ).to(device).eval()
    text = wiki_text(Path(a.corpus).read_text(encoding="utf-8"))
    ids = tok.encode(text[: a.tokens * 16], add_special_tokens=False).ids[: a.tokens]
    if len(ids) < a.tokens:
        raise SystemExit(f"the corpus gave only {len(ids)} tokens")
    window = torch.tensor([ids], device=device)
    prompt = torch.tensor([tok.encode(PROMPT, add_special_tokens=False).ids], device=device)
    return model, window, prompt


def memory(device: torch.device):
    if device.type != "cuda":
        return None
    return {"max_allocated_bytes": torch.cuda.max_memory_allocated(device)}


def forward(a, device):
    model, window, prompt = load(a, device)
    forward_s, tps = forward_and_generation(
        model, window, prompt, a.gen_tokens, a.repeats, sync=lambda: sync(device)
    )
    return {
        "forward_tokens": a.tokens,
        "forward_seconds": forward_s,
        "gen_tokens": a.gen_tokens,
        "gen_tokens_per_second": tps,
    }


def relevance(a, device):
    from make_relevance_fixtures import apply_rules
    from peer_lxt import relevance_pass

    apply_rules("attnlrp")
    model, window, _ = load(a, device)
    linears = [m for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear)]

    def once():
        return relevance_pass(model, window, linears, sync=lambda: sync(device))

    once()
    return {"tokens": a.tokens, "relevance_seconds": statistics.median(once() for _ in range(a.repeats))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["forward", "relevance"])
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--tokens", type=int, required=True)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="the model's weights and activations")
    a = p.parse_args()

    import transformers

    device = torch.device(a.device)
    out = (forward if a.what == "forward" else relevance)(a, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rules = " + LXT 2.1 efficient AttnLRP" if a.what == "relevance" else ""
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} + transformers {transformers.__version__}{rules}",
        "device": name, "dtype": a.dtype, "repeats": a.repeats, **out, "memory": memory(device),
    }))


if __name__ == "__main__":
    main()
