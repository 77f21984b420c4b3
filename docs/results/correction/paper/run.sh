#!/usr/bin/env bash
# The paper's correction settings (Hatefi et al. §3.4) on SmolLM2-135M-Instruct, each over split
# seeds 0-2 against Wanda, gradient and random at the same dose, with wiki-512x16 perplexity as
# the guard-rail, and a λ sweep of the contrastive relevance for toxicity (seed 0, LRP only).
# Run from the repository root after `cargo xtask assets`; results land beside this script, and
# `python3 docs/results/correction/paper/summarize.py` turns them into the README's tables.
# A run whose correction.json exists is skipped, so an interrupted sweep resumes; a run another
# instance of this script is doing is skipped too (its lock folder), so two instances can share
# the machine: decoding runs on one core, so a second instance (`ORDER=2`, which starts at the
# other end of the list) uses the other.
set -euo pipefail
here=docs/results/correction/paper
cargo build --quiet --release -p scalpel-cli
common=(--samples 32 --windows 16 --no-checkpoint --methods lrp,wanda,gradient,random)

run() { # name seed args...
  local name=$1 seed=$2; shift 2
  local out=$here/$name/seed$seed
  [ -f "$out/correction.json" ] && return 0
  mkdir -p "$here/$name"
  mkdir "$out.lock" 2>/dev/null || return 0
  echo "== $name seed $seed ($(date -u +%H:%M:%S))"
  target/release/scalpel correct --seed "$seed" --out "$out" "$@" || { rmdir "$out.lock"; return 1; }
  rmdir "$out.lock"
}

main_settings() {
  for seed in 0 1 2; do
    run toxicity-100-neurons "$seed" "${common[@]}" --behaviour toxicity \
      --components neurons --count 100 --doses 100
    run repetition-7000-up-weights "$seed" "${common[@]}" --behaviour repetition \
      --components weights --linears up --count 7000 --doses 7000
  done
}
neuron_repetition() {
  for seed in 0 1 2; do
    run repetition-20-neurons "$seed" "${common[@]}" --behaviour repetition \
      --components neurons --count 20 --doses 20
  done
}
lambda_sweep() {
  for lambda in 0.5 2 4; do
    run "toxicity-100-neurons-lambda$lambda" 0 --samples 32 --windows 16 --no-checkpoint \
      --methods lrp --behaviour toxicity --components neurons --count 100 --doses 100 \
      --contrast "$lambda"
  done
}
if [ "${ORDER:-1}" = 2 ]; then
  neuron_repetition; lambda_sweep; main_settings
else
  main_settings; neuron_repetition; lambda_sweep
fi
