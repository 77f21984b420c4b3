#!/usr/bin/env python3
"""Why |mean R| prunes badly: reads the score files a sweep cached (default /work/sweep/scores,
or `scalpel sweep --scores-dir DIR`) and prints, for three Linears of SmolLM2, the median of
|mean R| / mean |R| (how much a weight's signed relevance cancels over the reference set) and
how often the 50 % per-row masks of lrp, lrp-abs and Wanda agree.

    python docs/results/compression/analyze_scores.py [SCORES_DIR]
"""
import sys

import numpy as np
from safetensors import safe_open

DIR = sys.argv[1] if len(sys.argv) > 1 else "/work/sweep/scores"
REF = "c4-128x256"
LINEARS = [
    "model.layers.2.mlp.down_proj.weight",
    "model.layers.15.self_attn.q_proj.weight",
    "model.layers.28.mlp.up_proj.weight",
]


def row_keep(scores: np.ndarray) -> np.ndarray:
    """Keep mask pruning the lower half of every row (stable: ties to the lower index)."""
    k = scores.shape[1] // 2
    pruned = np.argsort(scores, axis=1, kind="stable")[:, :k]
    keep = np.ones(scores.shape, dtype=bool)
    np.put_along_axis(keep, pruned, False, axis=1)
    return keep


def main() -> None:
    files = {m: safe_open(f"{DIR}/{m}-{REF}.safetensors", "np") for m in ("lrp", "lrp-abs", "wanda")}
    for name in LINEARS:
        lrp, lrp_abs, wanda = (files[m].get_tensor(name) for m in ("lrp", "lrp-abs", "wanda"))
        ratio = np.median(lrp / np.maximum(lrp_abs, 1e-30))
        k_lrp, k_abs, k_wanda = row_keep(lrp), row_keep(lrp_abs), row_keep(wanda)
        print(
            f"{name}: median |mean R| / mean |R| = {ratio:.3f}; 50% row masks agree: "
            f"lrp~wanda {np.mean(k_lrp == k_wanda):.3f}, lrp-abs~wanda {np.mean(k_abs == k_wanda):.3f}, "
            f"lrp~lrp-abs {np.mean(k_lrp == k_abs):.3f}"
        )


if __name__ == "__main__":
    main()
