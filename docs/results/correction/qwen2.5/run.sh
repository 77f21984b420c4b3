#!/usr/bin/env bash
# The paper's correction settings on a second model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF,
# `cargo xtask assets`), LRP's contrastive relevance (λ = 1) against random at the same dose,
# wiki-512x16 perplexity as the guard-rail. SETTING picks the setting:
#   toxicity (default)     100 neurons;
#   repetition             7,000 up-projection weights, ranked globally;
#   repetition-neurons     20 neurons.
# A seed of two methods took 29-33 minutes on a 2-core machine while continuations were generated
# one prompt at a time, and about 12 since they are batched (2026-12-07).
# Seeds from SEEDS (default "0 1 2"). BASELINES=1 runs Wanda and gradient at the same dose
# instead, into the setting's folder with "-baselines" added (the same seeds draw the same
# splits, so they compare with the LRP and random runs). A run whose correction.json exists is
# skipped. Run from the repository root; results land beside this script.
set -euo pipefail
here=docs/results/correction/qwen2.5
cargo build --quiet --release -p scalpel-cli
case "${SETTING:-toxicity}" in
  toxicity)
    name=toxicity-100-neurons
    setting=(--behaviour toxicity --components neurons --count 100 --doses 100) ;;
  repetition)
    name=repetition-7000-up-weights
    setting=(--behaviour repetition --components weights --linears up --count 7000 --doses 7000) ;;
  repetition-neurons)
    name=repetition-20-neurons
    setting=(--behaviour repetition --components neurons --count 20 --doses 20) ;;
  *) echo "SETTING is toxicity, repetition or repetition-neurons, not ${SETTING}" >&2; exit 2 ;;
esac
if [ -n "${BASELINES:-}" ]; then
  methods=wanda,gradient folder=$name-baselines
else
  methods=lrp,random folder=$name
fi
for seed in ${SEEDS:-0 1 2}; do
  out=$here/$folder/seed$seed
  [ -f "$out/correction.json" ] && continue
  target/release/scalpel correct --model assets/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    --seed "$seed" --samples 32 --windows 16 --no-checkpoint --methods "$methods" "${setting[@]}" \
    --out "$out"
done
