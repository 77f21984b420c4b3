#!/usr/bin/env python3
"""Random-weight checkpoints at real model shapes, stored as the hub stores them.

    python crates/xtask/bench/make_large_checkpoints.py --out /tmp/large --shapes tinyllama,llama2-7b

For each shape (`gpu_bench.SHAPES`: TinyLlama-1.1B's, Llama-2-7B's, ...) it writes
`OUT/<shape>/` with config.json, bfloat16 safetensors in 2 GB shards with
model.safetensors.index.json, and a word-level tokenizer.json over the shape's vocabulary, plus
`OUT/<shape>-<tokens>.corpus` (random tokens in the wiki corpus' markup). The weights are
initialised by transformers (seed 0) directly in bfloat16, so writing the 7B shape needs about
14 GB of memory and 13.5 GB of disk. Scalpel loads the folder with `--model OUT/<shape>`; the
README's "Weight precision" section lists what was measured on it.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_bench import SHAPES, make_checkpoint  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--shapes", default="tinyllama", help=f"comma-separated: {', '.join(SHAPES)}")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--tokens", type=int, default=2048, help="corpus length in tokens")
    a = p.parse_args()
    for shape in a.shapes.split(","):
        started = time.time()
        folder, corpus = make_checkpoint(shape, a.out, a.tokens, a.dtype, max_shard_size="2GB")
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        print(f"{shape}: {folder} ({size / 1e9:.2f} GB of {a.dtype} safetensors), {corpus}, "
              f"{time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
