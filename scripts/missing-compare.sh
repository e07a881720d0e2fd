#!/usr/bin/env bash
# Training on incomplete samples, measured: a dataset where 30 % of the samples lack one
# modality (audio), GRAM trained with each rule for a missing vector — `present` (the volume of
# the vectors present), `placeholder` (a learned embedding) — against GRAM trained on the
# complete samples only (`drop`, what one does without this support), same steps and batch.
# Every model is evaluated on the same test split, incomplete samples included, by
# `gram-train eval` (volume ranks; a missing vector scored by the vectors present): R@1 both ways.
# Two datasets: `synth` features (MLP heads) and the raw pipeline's small encoders (BERT text,
# CLIP ViT frames, AST audio, from scratch).
# Usage: scripts/missing-compare.sh [OUT_DIR] [SYNTH_STEPS] [RAW_STEPS]
#        (default: target/missing-compare 400 300; ~20 min on 2 cores)
set -euo pipefail
out="${1:-target/missing-compare}"
synth_steps="${2:-400}"
raw_steps="${3:-300}"
rm -rf "$out" && mkdir -p "$out"
cargo build --release -q -p gram-train
gt="${CARGO_TARGET_DIR:-target}/release/gram-train"

# One table row per rule: R@1 both ways on DATA's test split.
table() {
  local data="$1" name="$2"
  shift 2
  for rule in present scaled placeholder drop; do
    "$gt" fit --data "$data" --out "$out/$name-$rule" --missing "$rule" --no-progress "$@" >/dev/null
    "$gt" eval --checkpoint "$out/$name-$rule" --data "$data" --split test --json \
      | python3 -c "
import json, sys
e = json.load(sys.stdin)['volume']
print(f\"| $name | $rule | {e['anchor_to_data']['r1']:.2f} | {e['data_to_anchor']['r1']:.2f} |\")"
  done
}

"$gt" synth --out "$out/synth" --n 8192 --missing audio=0.3 >/dev/null
"$gt" make-raw --out "$out/raw" --train 2048 --val 256 --test 512 --seed 1 --missing audio=0.3
{
  echo "| data | rule for a missing vector | A→D R@1 | D→A R@1 |"
  echo "|---|---|---|---|"
  table "$out/synth" synth --steps "$synth_steps" --batch-size 256
  table "$out/raw" raw --steps "$raw_steps" --batch-size 64
} | tee "$out/table.md"
