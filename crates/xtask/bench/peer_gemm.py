"""Peer of `scalpel bench --gemm` for `cargo xtask bench gemm`: the same matrix products with
PyTorch's CPU kernels, `torch.nn.functional.linear(x, W)` (x `[tokens, in]`, W `[out, in]`), on
random inputs, the same shapes (read from Scalpel's JSON line) and thread count. Median seconds
over repeats after a warm-up. Prints one JSON line.
"""
import argparse
import json
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", required=True, help="Scalpel's JSON line (its `gemm` rows)")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = []
    with torch.inference_mode():
        for shape in json.loads(a.shapes)["gemm"]:
            x = torch.randn(shape["tokens"], shape["in"])
            w = torch.randn(shape["out"], shape["in"])

            def once():
                start = time.perf_counter()
                torch.nn.functional.linear(x, w)
                return time.perf_counter() - start

            once()
            seconds = statistics.median(once() for _ in range(a.repeats))
            flops = 2.0 * shape["tokens"] * shape["in"] * shape["out"]
            rows.append({**{k: shape[k] for k in ("name", "tokens", "in", "out")},
                         "seconds": seconds, "gflops_per_second": flops / seconds / 1e9})
    print(json.dumps({"impl": f"pytorch {torch.__version__}", "device": "CPU",
                      "threads": torch.get_num_threads(), "gemm": rows, "repeats": a.repeats}))


if __name__ == "__main__":
    main()
