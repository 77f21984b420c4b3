"""Peer benchmark for `cargo xtask bench`: scoring a reference set with PyTorch on the CPU, the same
measurement as Scalpel's reference-set scoring (same model file, same reference set, same thread count).

Reference set: protocol `c4-<samples>x<seq_len>` (default `c4-128x256`) of
docs/protocols.md, built by `c4_reference` below.

Methods (every decoder-block Linear: q, k, v, o, gate, up, down):
- `lrp`: per sample (batch 1), LXT 2.1 efficient-mode AttnLRP (the fixture script's
  `apply_rules("attnlrp")`, as peer_lxt.py), forward, explained scalar = sum over positions
  p in 0..len-2 of logits[0, p, ids[p+1]] (the true next tokens), backward, then running sums of
  W * grad and |W * grad| (two float32 tensors per Linear, as Scalpel keeps), grads dropped.
  Only the block Linears' weights require grad (embeddings / lm_head / norms do not: their weight
  gradients are not needed, and computing the tied 49152 x 576 lm_head gradient would only slow
  the peer down).
- `wanda`: forward only under torch.no_grad, forward_pre hooks add each Linear input's per-column
  sum of squares (float32); final metric |W| * sqrt(sumsq).

Timing (`seconds`) covers the scoring loop and the final metric, not the model load nor the
tokenization of the reference set. Memory: VmRSS after the model is loaded and the reference set
built (VmHWM reset there), and VmHWM after scoring. Prints one JSON line.

`--dump-ids FILE` writes the reference token ids as JSON (a list of lists); without `--method`
the script stops after that (no model load).

Tokenizer: by default the canonical SmolLM2 tokenizer (transformers' GGUF tokenizer with the
`smollm` pre-tokenizer restored: digits split off before the GPT-2 byte-level regex -- what
llama.cpp and Scalpel do; see make_fixtures.smollm2_pretokenizer_fix). `--tokenizer transformers`
uses transformers' GGUF tokenizer unchanged (it differs on C4 text wherever whitespace precedes a
digit).
"""
import argparse
import json
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from peer_lxt import rss  # noqa: E402


def c4_documents(raw: str) -> list[str]:
    """Same as scalpel::eval::corpus::c4_documents: one document per line, trimmed, empty lines dropped."""
    return [line.strip() for line in raw.split("\n") if line.strip()]


def _encoder(tok):
    """text -> ids without special tokens, for a `tokenizers.Tokenizer` or a transformers tokenizer."""
    if hasattr(tok, "encode") and not hasattr(tok, "convert_ids_to_tokens"):  # tokenizers.Tokenizer
        return lambda text: tok.encode(text, add_special_tokens=False).ids
    if callable(tok) and not hasattr(tok, "encode"):  # a plain function
        return tok
    return lambda text: tok(text, add_special_tokens=False)["input_ids"]


def c4_reference(tok, path, samples: int = 128, seq_len: int = 256) -> list[list[int]]:
    """Protocol `c4-<samples>x<seq_len>`: `c4.utf8` documents (non-empty trimmed lines) in file order,
    each tokenized alone without special tokens. Pass 1: every document with >= seq_len tokens gives
    its first seq_len tokens. If that gives fewer than `samples`, pass 2 walks the documents again in
    file order and takes each document's further non-overlapping windows [k*seq_len, (k+1)*seq_len),
    k = 1, 2, ... (all of one document's windows before the next document's), until `samples`.
    Like Scalpel's ReferenceSet::from_documents, returns fewer samples when the text runs out
    (raises only when not even one window fits)."""
    encode = _encoder(tok)
    docs = [encode(d) for d in c4_documents(Path(path).read_text(encoding="utf-8"))]
    out = [ids[:seq_len] for ids in docs if len(ids) >= seq_len][:samples]
    for ids in docs:
        k = 1
        while len(out) < samples and (k + 1) * seq_len <= len(ids):
            out.append(ids[k * seq_len:(k + 1) * seq_len])
            k += 1
        if len(out) >= samples:
            break
    if not out:
        raise ValueError(f"{path}: no document has {seq_len} tokens")
    return out


def load_tokenizer(path: Path, kind: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if kind == "transformers":
        return tok
    from make_fixtures import smollm2_pretokenizer_fix

    return smollm2_pretokenizer_fix(tok.backend_tokenizer)


def block_linears(model) -> list[torch.nn.Linear]:
    return [m for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear)]


def score_lrp(model, reference: list[list[int]], with_abs: bool = False):
    """The lrp scores |mean over samples of W * grad| per decoder-block Linear, from a running
    sum (turned into the scores in place), and the running sum of |W * grad| when `with_abs`
    (what Scalpel keeps for lrp-abs)."""
    linears = block_linears(model)
    keep = {id(m.weight) for m in linears}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    signed = [torch.zeros_like(m.weight) for m in linears]
    absolute = [torch.zeros_like(m.weight) for m in linears] if with_abs else None
    for sample in reference:
        ids = torch.tensor([sample], dtype=torch.int64)
        logits = model(input_ids=ids, use_cache=False).logits
        target = logits[0, :-1].gather(1, ids[0, 1:, None]).sum()
        target.backward()
        del logits, target
        with torch.no_grad():
            for i, (m, s) in enumerate(zip(linears, signed)):
                r = m.weight * m.weight.grad
                s.add_(r)
                if absolute is not None:
                    absolute[i].add_(r.abs_())
                m.weight.grad = None
    with torch.no_grad():
        for s in signed:
            s.div_(len(reference)).abs_()
    return signed, absolute


def score_wanda(model, reference: list[list[int]]):
    linears = block_linears(model)
    sumsq = [torch.zeros(m.in_features) for m in linears]

    def hook(acc):
        def add(module, args):
            x = args[0].reshape(-1, args[0].shape[-1])
            acc.add_((x * x).sum(0))
        return add

    handles = [m.register_forward_pre_hook(hook(acc)) for m, acc in zip(linears, sumsq)]
    try:
        with torch.no_grad():
            for sample in reference:
                model(input_ids=torch.tensor([sample], dtype=torch.int64), use_cache=False)
            metric = [m.weight.abs() * s.sqrt()[None, :] for m, s in zip(linears, sumsq)]
    finally:
        for h in handles:
            h.remove()
    return metric


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", default="assets/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--c4", default="assets/c4.utf8")
    p.add_argument("--method", choices=["lrp", "wanda"])
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--tokenizer", choices=["canonical", "transformers"], default="canonical")
    p.add_argument("--dump-ids", metavar="FILE")
    a = p.parse_args()
    if a.method is None and a.dump_ids is None:
        p.error("give --method and/or --dump-ids")

    torch.set_num_threads(a.threads)
    if a.method == "lrp":
        from make_relevance_fixtures import apply_rules

        apply_rules("attnlrp")
    from transformers import AutoModelForCausalLM

    path = Path(a.gguf)
    tok = load_tokenizer(path, a.tokenizer)
    t0 = time.perf_counter()
    reference = c4_reference(tok, a.c4, a.samples, a.seq_len)
    reference_seconds = time.perf_counter() - t0
    if len(reference) < a.samples:
        print(f"note: the text gives only {len(reference)} samples of {a.seq_len} tokens", file=sys.stderr)
    if a.dump_ids:
        Path(a.dump_ids).write_text(json.dumps(reference) + "\n")
    if a.method is None:
        return

    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()

    before, _ = rss(True)
    start = time.perf_counter()
    scores = score_lrp(model, reference) if a.method == "lrp" else score_wanda(model, reference)
    seconds = time.perf_counter() - start
    _, peak = rss(False)
    del scores
    impl = (f"LXT 2.1 efficient AttnLRP + pytorch {torch.__version__}" if a.method == "lrp"
            else f"pytorch {torch.__version__} + transformers {__import__('transformers').__version__}")
    print(json.dumps({
        "impl": impl, "device": "CPU", "threads": torch.get_num_threads(), "method": a.method,
        "protocol": f"c4-{len(reference)}x{a.seq_len}", "tokenizer": a.tokenizer,
        "samples": len(reference), "seq_len": a.seq_len,
        "seconds": seconds, "seconds_per_sample": seconds / len(reference),
        "reference_seconds": reference_seconds,
        "memory": {"rss_before_bytes": before, "peak_rss_bytes": peak, "extra_bytes": peak - before},
    }))


if __name__ == "__main__":
    main()
