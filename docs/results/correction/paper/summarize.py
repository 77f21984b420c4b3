#!/usr/bin/env python3
"""Mean ± standard error over split seeds of every correction run under a folder.

Reads <setting>/seed<N>/correction.json (written by run.sh) under the folder given (this script's
own by default; `summarize.py ../qwen2.5` for the second model) and prints, per setting, one row
per method: the behaviour on the held-out prompts (rate and mean score), wiki-512x16 perplexity
and its change against the dense model of the same seed, each as mean ± standard error over the
seeds present (standard library only). A folder `<setting>-baselines` (methods run separately on
the same seeds) joins its setting's table; a method run on fewer seeds than the setting names them.
Writes the same to summary.md in that folder.
"""

import json
import math
import statistics
import sys
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
    methods = []
    for r in reports:
        methods += [m["method"] for m in r["methods"] if m["method"] not in methods]
    for method in methods:
        # Each method over the seeds it ran on, against the dense model of the same seed.
        runs = [
            (r["protocol"]["seed"], m["doses"][0], r["dense"])
            for r in reports
            for m in r["methods"]
            if m["method"] == method
        ]
        points = [pt for _, pt, _ in runs]
        change = [pt["perplexity"] / d["perplexity"] - 1 for _, pt, d in runs]
        ran = [seed for seed, _, _ in runs]
        label = f"`{method}`" + ("" if ran == seeds else f" (seeds {', '.join(map(str, ran))})")
        lines.append(
            f"| {label} | {fmt([pt['held_out']['rate'] for pt in points], 100, 1, ' %')} | "
            f"{fmt([pt['held_out']['mean_score'] for pt in points], 1, 3)} | "
            f"{fmt([pt['perplexity'] for pt in points], 1, 2)} | "
            f"{fmt(change, 100, 0, ' %')} |"
        )
    return "\n".join(lines) + "\n"


def lambda_table(here):
    """LRP's toxicity correction at 100 neurons, seed 0, for each λ run (λ = 1: the main run)."""
    rows = []
    for setting in here.glob("toxicity-100-neurons*"):
        f = setting / "seed0" / "correction.json"
        if setting.name.endswith("-baselines") or not f.exists():
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


def seed_reports(setting):
    """The setting's report per seed, with the methods of `<setting>-baselines` added to each
    seed that has both."""
    def by_seed(folder):
        return {f.parent.name: json.loads(f.read_text()) for f in sorted(folder.glob("seed*/correction.json"))}

    reports = by_seed(setting)
    baselines = setting.with_name(setting.name + "-baselines")
    if baselines.is_dir():
        for seed, extra in by_seed(baselines).items():
            if seed in reports:
                reports[seed]["methods"] += extra["methods"]
    return list(reports.values())


def main():
    here = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE
    out = []
    for setting in sorted(p for p in here.iterdir() if p.is_dir()):
        if "lambda" in setting.name or setting.name.endswith("-baselines"):
            continue
        reports = seed_reports(setting)
        if reports:
            out.append(setting_table(setting.name, reports))
    sweep = lambda_table(here)
    if sweep:
        out.append(sweep)
    text = "\n".join(out)
    (here / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
