#!/usr/bin/env bash
# The paper's toxicity setting (100 neurons, contrastive relevance, λ = 1) on a second model:
# Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, `cargo xtask assets`), LRP against random at the same
# dose, wiki-512x16 perplexity as the guard-rail. Seeds from SEEDS (default "0 1 2", the three run);
# a seed took 29-33 minutes on a 2-core machine. Run from the repository root; results land beside
# this script.
set -euo pipefail
here=docs/results/correction/qwen2.5
cargo build --quiet --release -p scalpel-cli
# BASELINES=1 runs Wanda and gradient at the same dose instead, into toxicity-100-neurons-baselines
# (the same seeds draw the same splits, so they compare with the LRP and random runs).
if [ -n "${BASELINES:-}" ]; then
  methods=wanda,gradient folder=toxicity-100-neurons-baselines
else
  methods=lrp,random folder=toxicity-100-neurons
fi
for seed in ${SEEDS:-0 1 2}; do
  out=$here/$folder/seed$seed
  [ -f "$out/correction.json" ] && continue
  target/release/scalpel correct --model assets/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    --seed "$seed" --samples 32 --windows 16 --no-checkpoint --methods "$methods" \
    --behaviour toxicity --components neurons --count 100 --doses 100 --out "$out"
done
