#!/usr/bin/env python3
"""The README's large-model table, measured again: Scalpel's CLI (and LXT where it fits) on the
random checkpoints of make_large_checkpoints.py, each run in its own process under
`/usr/bin/time -v` (wall time and peak RSS), one after the other.

    python crates/xtask/bench/make_large_checkpoints.py --out /tmp/large --shapes tinyllama
    python crates/xtask/bench/large_shapes.py --root /tmp/large --shapes tinyllama

Operations (`--ops`, comma-separated; all by default):
  generate   greedy decode of 8 tokens
  explain    explain --weights on a 128-token prompt (AttnLRP, W ⊙ G_W summed per layer)
  wanda      prune --method wanda at 0.5 per row over 4 × 128 reference tokens, --eval on
             wiki-128x4 of the shape's corpus, --out (sharded export), then eval ppl of the export
  lrp-abs    the same with lrp-abs (refused where its per-weight sums do not fit)
  lxt        one AttnLRP pass over 128 tokens keeping every W ⊙ G_W: scalpel bench --relevance
             against LXT 2.1 (peer_lxt.py --model) in float32 and 16-bit
Prints the protocol, one line per run, and a Markdown table.
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPS = ["generate", "explain", "wanda", "lrp-abs", "lxt"]


def timed(cmd, log):
    """(seconds, peak RSS in bytes, exit status, output) of `cmd` under /usr/bin/time -v."""
    started = time.time()
    p = subprocess.run(["/usr/bin/time", "-v", *map(str, cmd)], capture_output=True, text=True)
    out = p.stdout + p.stderr
    log.write(f"$ {' '.join(map(str, cmd))}\n{out}\n")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out)
    return time.time() - started, int(rss.group(1)) * 1024 if rss else None, p.returncode, out


def grab(pattern, text):
    m = re.search(pattern, text)
    return m.group(1) if m else "?"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="make_large_checkpoints.py's --out")
    p.add_argument("--shapes", default="tinyllama", help="comma-separated folders under --root")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--scalpel", default="target/release/scalpel")
    p.add_argument("--python", default=sys.executable, help="a Python with torch, transformers, lxt")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    ops = a.ops.split(",")
    unknown = set(ops) - set(OPS)
    if unknown:
        sys.exit(f"unknown operations: {', '.join(sorted(unknown))} (known: {', '.join(OPS)})")
    print("protocol: each run in its own process, one after the other, /usr/bin/time -v; "
          f"CPU backend, {a.threads} threads for LXT; reference and perplexity text: the shape's "
          "random-token corpus; prompts: its first tokens", flush=True)
    rows = []
    log_path = Path(tempfile.mkstemp(prefix="large-shapes-", suffix=".log")[1])
    print(f"full output: {log_path}", flush=True)
    with log_path.open("w") as log:
        for shape in a.shapes.split(","):
            model = a.root / shape
            corpus = next(a.root.glob(f"{shape}-*.corpus"))
            words = re.findall(r"\bt\d+\b", corpus.read_text())
            prompt = " ".join(words[:128])
            common = ["--model", model, "--device", "cpu"]
            ref = ["--reference", corpus, "--whole-file", "--samples", "4", "--sample-len", "128"]
            ppl = ["--corpus", corpus, "--window", "128", "--windows", "4"]

            def run(op, cmd, note=lambda out: ""):
                seconds, rss, status, out = timed(cmd, log)
                result = note(out) if status == 0 else f"failed ({out.strip().splitlines()[-1][:160]})"
                row = (shape, op, f"{seconds:.1f} s", f"{rss / 1e9:.2f} GB" if rss else "?", result)
                print(" | ".join(row), flush=True)
                rows.append(row)
                return status, out

            if "generate" in ops:
                run("generate 8 tokens", [a.scalpel, "generate", *common, "-p", " ".join(words[:4]), "-n", "8"],
                    lambda out: grab(r"([\d.]+ tokens/s)", out))
            if "explain" in ops:
                run("explain --weights, 128 tokens", [a.scalpel, "explain", *common, "-p", prompt, "--weights"],
                    lambda out: "Σ R_input / R_output " + grab(r"Σ input relevance / output = ([-\d.]+)", out))
            for method in [m for m in ("wanda", "lrp-abs") if m in ops]:
                with tempfile.TemporaryDirectory(prefix=f"pruned-{shape}-") as out_dir:
                    status, _ = run(f"prune {method} 0.5 row, eval, export",
                                    [a.scalpel, "prune", *common, "--method", method, "--sparsity", "0.5",
                                     *ref, "--eval", *ppl, "--out", out_dir, "--force"],
                                    lambda out: "perplexity " + grab(r"perplexity ([\d.]+)", out))
                    if status == 0:
                        run("eval ppl of the export", [a.scalpel, "eval", "ppl", "--model", out_dir,
                                                       "--device", "cpu", *ppl],
                            lambda out: "perplexity " + grab(r"perplexity ([\d.]+)", out))
            if "lxt" in ops:
                for ours, theirs in (("f32", "float32"), ("auto", "bfloat16")):
                    run(f"AttnLRP 128 tokens, Scalpel --dtype {ours}",
                        [a.scalpel, "bench", *common, "--dtype", ours, "--relevance", "--forward-tokens", "128",
                         "--repeats", "3", "--corpus", corpus],
                        lambda out: grab(r'"relevance_seconds":([\d.]+)', out) + " s per pass")
                    run(f"AttnLRP 128 tokens, LXT {theirs}",
                        [a.python, HERE / "peer_lxt.py", "--model", model, "--dtype", theirs, "--threads",
                         a.threads, "--tokens", "128", "--repeats", "3", "--corpus", corpus],
                        lambda out: grab(r'"relevance_seconds": ([\d.]+)', out) + " s per pass")
    print("\n| shape | operation | wall | peak RSS | result |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
