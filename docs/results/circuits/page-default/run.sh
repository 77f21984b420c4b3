#!/usr/bin/env bash
# What the Circuits panel's default search loses when it is made to fit in a minute on the page's
# CPU fallback: the panel's search (IOI, heads, LRP, global ranking, the circuit picked from the
# measured curve at 90 % of the dense logit difference, no bisection) over five seeds, with the
# old default (32 prompts, 14 shares) and the new one (16 prompts, 10 shares), natively. Each seed
# tests its circuit on as many held-out prompts as it scored on; seed 0's circuit of each is also
# tested on the same 64 held-out prompts (`--load`, written to load-64.txt), one yardstick for
# both. Run from the repository root; results land beside this script.
set -euo pipefail
here=docs/results/circuits/page-default
cargo build --quiet --release -p scalpel-cli
run() { # name prompts fractions
  out=$here/$1
  [ -f "$out/circuit.json" ] && return
  target/release/scalpel circuit --task ioi --granularity heads --methods lrp --seeds 5 \
    --prompts "$2" --fractions "$3" --refine 0 --threshold 0.9 --out "$out" \
    --save-circuit "$out/circuit-seed0.json"
  target/release/scalpel circuit --task ioi --load "$out/circuit-seed0.json" --prompts 64 \
    > "$out/load-64.txt"
}
run old-32-prompts 32 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.97,0.98,0.99
run new-16-prompts 16 0,0.2,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.99
