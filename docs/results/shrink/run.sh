#!/usr/bin/env bash
# Structured pruning that pays: SmolLM2-135M-Instruct with a share of every layer's MLP neurons
# pruned (Wanda and LRP neuron scores over c4-16x256, per layer), written once with the pruned
# neurons as zeros and once shrunk (`prune --shrink`), then each checkpoint measured side by side:
# wiki-512x16 perplexity, file size, parameters, and greedy generation speed on the CPU (128 new
# tokens, 3 alternating runs, the median). Run from the repository root after `cargo xtask assets`;
# writes results.md beside this script (the checkpoints go to $TMPDIR and are deleted).
# `run.sh heads` does the same for attention heads (per layer, and N:M within each key/value
# group, which is what shrinks under grouped-query attention) and writes results-heads.md.
set -euo pipefail
here=docs/results/shrink
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --quiet --release -p scalpel-cli
bin=target/release/scalpel
export SCALPEL_PROMPT="The history of the city begins"
ppl() { "$bin" eval ppl --device cpu --model "$1" --windows 16 2>/dev/null | sed -n 's/.*perplexity \([0-9.]*\).*/\1/p'; }
speed() { # median tokens/s of 3 runs of each model in $@, alternating
  local -A runs
  for _ in 1 2 3; do
    for m in "$@"; do
      runs[$m]+="$("$bin" generate --device cpu --model "$m" -p "$SCALPEL_PROMPT" -n 128 --ignore-eos 2>&1 >/dev/null \
        | sed -n 's/.*(\([0-9.]*\) tokens\/s).*/\1/p') "
    done
  done
  for m in "$@"; do echo "${runs[$m]}" | tr ' ' '\n' | grep . | sort -g | sed -n 2p; done
}
params() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['shrink']['parameters_after'])" "$1"; }
# Writes mask $1 as zeros and shrunk, measures both; prints "ppl zeros / shrunk|params|size|speeds|ratio".
measure() {
  local d=${1%.mask} s zeros_ppl shrunk_ppl size p ratio
  "$bin" prune --device cpu --mask "$1" --out "$d-zeros" >/dev/null 2>&1
  "$bin" prune --device cpu --mask "$1" --out "$d-shrunk" --shrink >/dev/null 2>&1
  zeros_ppl=$(ppl "$d-zeros"); shrunk_ppl=$(ppl "$d-shrunk")
  mapfile -t s < <(speed "$d-zeros" "$d-shrunk")
  size=$(stat -c %s "$d-shrunk/model.safetensors" | awk '{printf "%.0f MB", $1/1e6}')
  p=$(params "$d-shrunk/scalpel-prune.json" | awk '{printf "%.1f M", $1/1e6}')
  ratio=$(awk -v a="${s[0]}" -v b="${s[1]}" 'BEGIN{printf "%.2f×", b/a}')
  echo "$zeros_ppl / $shrunk_ppl | $p | $size | ${s[0]} / ${s[1]} | $ratio"
}

unit=${1:-neurons}
"$bin" prune --device cpu --method magnitude --sparsity 0 --out "$work/dense" >/dev/null 2>&1
dense_ppl=$(ppl "$work/dense")
if [ "$unit" = heads ]; then
  {
    echo "| method | heads pruned per layer (group) | heads / key-value heads written | wiki-512x16 perplexity (zeros / shrunk) | parameters | model.safetensors | tokens/s (zeros / shrunk) | speed-up |"
    echo "|---|---|---|---|---:|---:|---|---:|"
    read -r dense_speed < <(speed "$work/dense")
    echo "| dense | 0 of 9 | 9 / 3 | $dense_ppl | 134.5 M | $(stat -c %s "$work/dense/model.safetensors" | awk '{printf "%.0f MB", $1/1e6}') | $dense_speed | 1.00× |"
    for method in wanda lrp-abs; do
      # 3 of 9 heads per layer wherever they are, then 1 and 2 of each group's 3.
      for setting in "layer 0.34 3" "2:3 - 3" "1:3 - 6"; do
        read -r group share pruned <<<"$setting"
        d="$work/$method-${group/:/of}"
        sparsity=(); [ "$share" = - ] || sparsity=(--sparsity "$share")
        "$bin" prune --device cpu --granularity heads --group "$group" "${sparsity[@]}" --method "$method" \
          --samples 16 --save-mask "$d.mask" >/dev/null 2>&1
        row=$(measure "$d.mask")
        written=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['num_attention_heads'], '/', c['num_key_value_heads'])" "$d-shrunk/config.json")
        echo "| \`$method\` | $pruned of 9 ($group) | $written | $row |"
      done
    done
  } | tee "$here/results-heads.md"
  exit 0
fi
{
  echo "| method | neurons pruned per layer | wiki-512x16 perplexity (zeros / shrunk) | parameters | model.safetensors | tokens/s (zeros / shrunk) | speed-up |"
  echo "|---|---:|---|---:|---:|---|---:|"
  read -r dense_speed < <(speed "$work/dense")
  echo "| dense | 0 % | $dense_ppl | 134.5 M | $(stat -c %s "$work/dense/model.safetensors" | awk '{printf "%.0f MB", $1/1e6}') | $dense_speed | 1.00× |"
  for method in wanda lrp-abs; do
    for share in 0.1 0.25 0.5; do
      d="$work/$method-$share"
      "$bin" prune --device cpu --granularity neurons --method "$method" --sparsity "$share" \
        --samples 16 --save-mask "$d.mask" >/dev/null 2>&1
      echo "| \`$method\` | $(awk -v x="$share" 'BEGIN{printf "%d %%", x*100}') | $(measure "$d.mask") |"
    done
  done
} | tee "$here/results.md"
