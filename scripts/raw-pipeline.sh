#!/usr/bin/env bash
# Raw-data pipeline end to end with the small encoders (BERT text, CLIP ViT video frames, AST
# audio): generate two raw datasets, pretrain on A, finetune on B from the checkpoint, and
# evaluate on B's test split with DAM re-ranking of the top 10 — against training on B from
# scratch with the same budget. Pass `--encoder text=bert:DIR` etc. through EXTRA to use
# pretrained encoders (e.g. EXTRA="--encoder text=bert:target/models/all-MiniLM-L6-v2").
# Usage: scripts/raw-pipeline.sh [OUT_DIR]   (default: target/raw-pipeline)
# DEVICE=cuda trains and evaluates on the GPU; GRAM_TRAIN_BIN=PATH uses that binary instead of
# building one (e.g. a CUDA build carried to a GPU machine by scripts/gpu-pack.sh).
set -euo pipefail
out="${1:-target/raw-pipeline}"
extra=(${EXTRA:-})
rm -rf "$out" && mkdir -p "$out"
if [ -n "${GRAM_TRAIN_BIN:-}" ]; then
  gt=("$GRAM_TRAIN_BIN" --device "${DEVICE:-cpu}")
else
  cargo build --release -q -p gram-train
  gt=("${CARGO_TARGET_DIR:-target}/release/gram-train" --device "${DEVICE:-cpu}")
fi
"${gt[@]}" make-raw --out "$out/A" --train 2048 --val 256 --test 256 --seed 1
"${gt[@]}" make-raw --out "$out/B" --train 512 --val 128 --test 256 --seed 2
echo "== pretrain on A (300 steps of 64)"
"${gt[@]}" fit --data "$out/A" --out "$out/pretrain" --steps 300 --batch-size 64 --no-progress "${extra[@]}"
echo "== finetune on B from the pretrained checkpoint (100 steps of 64)"
"${gt[@]}" fit --data "$out/B" --out "$out/finetune" --init-from "$out/pretrain" --steps 100 --batch-size 64 --lr 3e-4 --no-progress
echo "== B from scratch, same budget"
"${gt[@]}" fit --data "$out/B" --out "$out/scratch" --steps 100 --batch-size 64 --lr 3e-4 --no-progress "${extra[@]}"
for run in finetune scratch; do
  echo "== eval $run on B/test"
  "${gt[@]}" eval --checkpoint "$out/$run" --data "$out/B" --split test --rerank 10
done
