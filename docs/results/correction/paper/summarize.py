#!/usr/bin/env python3
"""Mean ± standard error over split seeds of every correction run under this folder.

Reads <setting>/seed<N>/correction.json (written by run.sh) and prints, per setting, one row per
method: the behaviour on the held-out prompts (rate and mean score), wiki-512x16 perplexity and
its change against the dense model of the same seed, each as mean ± standard error over the
seeds present (standard library only). Writes the same to summary.md beside this script.
"""

import json
import math
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent


def mean_se(values):
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return m, se


def fmt(values, scale=1.0, digits=1, suffix=""):
    m, se = mean_se([v * scale for v in values])
    if math.isnan(se):
        return f"{m:.{digits}f}{suffix}"
    return f"{m:.{digits}f} ± {se:.{digits}f}{suffix}"


def setting_table(name, reports):
    p = reports[0]["protocol"]
    seeds = [r["protocol"]["seed"] for r in reports]
    dose = reports[0]["methods"][0]["doses"][0]["count"]
    lines = [
        f"### {name}",
        "",
        f"{p['behaviour']}: {p['components']} of the Linears {p['linears']} "
        f"({p['total_components']:,} in all), dose {dose:,}, λ = {p['contrast']}; "
        f"{p['held_out_prompts']} held-out prompts per seed, seeds {', '.join(map(str, seeds))}; "
        f"undesired sets of {', '.join(str(r['protocol']['undesired']['samples']) for r in reports)} continuations; "
        f"general set {p['general']['name']}.",
        "",
        f"| method | {p['rate_name']} | {p['score_name']} | {p['perplexity']['name']} perplexity | perplexity change |",
        "|---|---:|---:|---:|---:|",
    ]
    dense = [r["dense"] for r in reports]
    lines.append(
        f"| dense | {fmt([d['held_out']['rate'] for d in dense], 100, 1, ' %')} | "
        f"{fmt([d['held_out']['mean_score'] for d in dense], 1, 3)} | "
        f"{fmt([d['perplexity'] for d in dense], 1, 2)} | – |"
    )
    for i, m in enumerate(reports[0]["methods"]):
        points = [r["methods"][i]["doses"][0] for r in reports]
        change = [pt["perplexity"] / d["perplexity"] - 1 for pt, d in zip(points, dense)]
        lines.append(
            f"| `{m['method']}` | {fmt([pt['held_out']['rate'] for pt in points], 100, 1, ' %')} | "
            f"{fmt([pt['held_out']['mean_score'] for pt in points], 1, 3)} | "
            f"{fmt([pt['perplexity'] for pt in points], 1, 2)} | "
            f"{fmt(change, 100, 0, ' %')} |"
        )
    return "\n".join(lines) + "\n"


def lambda_table():
    """LRP's toxicity correction at 100 neurons, seed 0, for each λ run (λ = 1: the main run)."""
    rows = []
    for setting in HERE.glob("toxicity-100-neurons*"):
        f = setting / "seed0" / "correction.json"
        if not f.exists():
            continue
        r = json.loads(f.read_text())
        lrp = next(m for m in r["methods"] if m["method"] == "lrp")["doses"][0]
        rows.append((r["protocol"]["contrast"], lrp, r["dense"]))
    if len(rows) < 2:
        return None
    lines = [
        "### contrast λ (toxicity, LRP, 100 neurons, seed 0)",
        "",
        "| λ | lexicon hit rate | mean severity | wiki-512x16 perplexity | perplexity change |",
        "|---:|---:|---:|---:|---:|",
    ]
    dense = rows[0][2]
    lines.append(
        f"| dense | {100 * dense['held_out']['rate']:.1f} % | {dense['held_out']['mean_score']:.3f} | "
        f"{dense['perplexity']:.2f} | – |"
    )
    for contrast, pt, d in sorted(rows, key=lambda r: r[0]):
        lines.append(
            f"| {contrast:g} | {100 * pt['held_out']['rate']:.1f} % | {pt['held_out']['mean_score']:.3f} | "
            f"{pt['perplexity']:.2f} | {100 * (pt['perplexity'] / d['perplexity'] - 1):.0f} % |"
        )
    return "\n".join(lines) + "\n"


def main():
    out = []
    for setting in sorted(p for p in HERE.iterdir() if p.is_dir()):
        if "lambda" in setting.name:
            continue
        reports = [
            json.loads(f.read_text())
            for f in sorted(setting.glob("seed*/correction.json"))
        ]
        if reports:
            out.append(setting_table(setting.name, reports))
    sweep = lambda_table()
    if sweep:
        out.append(sweep)
    text = "\n".join(out)
    (HERE / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
