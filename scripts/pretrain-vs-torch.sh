#!/usr/bin/env bash
# The full-model pretraining step against PyTorch on this machine's CPU (named first), both sides
# alternating ROUNDS times in one run:
#   speed:  `pretrain_step` vs benches/python/torch_pretrain.py — MiniLM-L6 + small CLIP ViT
#           (4 frames of 32²) + small AST, GRAM + DAM, AdamW, B = 64, THREADS threads: samples/s
#   memory: the same with a ViT-B/16 video tower at 224² (--vision vit-b16), B = 4 (16 frames):
#           the whole process's peak RSS (model, AdamW state, activations, loader; gram prints
#           its own, PyTorch's is /usr/bin/time's maximum resident set)
# Medians with the range. Needs a Python with torch and transformers (PYTHON=…, default python3)
# and MiniLM (scripts/fetch-minilm.sh, fetched here if missing).
#   bash scripts/pretrain-vs-torch.sh [ROUNDS] [THREADS] [PART]   (defaults 5 2 all; PART speed|memory|all)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; threads=${2:-2}; part=${3:-all}; py=${PYTHON:-python3}
target=${CARGO_TARGET_DIR:-target}
minilm=${MINILM:-$target/models/all-MiniLM-L6-v2}
bash scripts/fetch-minilm.sh "$minilm" >&2
cargo build -q --release -p gram-benches --bin pretrain_step
export RAYON_NUM_THREADS=$threads
bin="$target/release/pretrain_step"
source scripts/stats.sh
torch_version=$("$py" -c 'import torch; print(torch.__version__)')
bash scripts/cpu-name.sh
# table TITLE "GRAM VALUES" "TORCH VALUES": the two sides' medians (range) and their ratio.
table() {
  local g=($2) t=($3)
  local mg mt; mg=$(median "${g[@]}"); mt=$(median "${t[@]}")
  echo "| $1, median of $rounds (range) |"
  echo "|---|---|"
  echo "| gram-train | $mg ($(range "${g[@]}")) |"
  echo "| PyTorch $torch_version | $mt ($(range "${t[@]}")) |"
  awk -v g="$mg" -v t="$mt" 'BEGIN{printf "gram / PyTorch: %.2f× (medians)", g/t}'
  # Each round's own ratio: the two sides ran back to back, so drift of the machine cancels.
  local r=() i
  for i in "${!g[@]}"; do r+=("$(awk -v g="${g[$i]}" -v t="${t[$i]}" 'BEGIN{printf "%.3f", g/t}')"); done
  echo "; per round $(range "${r[@]}"), median $(median "${r[@]}")×"
  echo
}

if [ "$part" = all ] || [ "$part" = speed ]; then
  gram=(); torch=()
  for r in $(seq "$rounds"); do
    g=$("$bin" --steps 6 --minilm "$minilm" 2>/dev/null | tail -1 | awk -F'|' '{print $2+0}')
    t=$("$py" benches/python/torch_pretrain.py "$minilm" --steps 6 --threads "$threads" 2>/dev/null \
        | tail -1 | sed -E 's/.*: ([0-9.]+) samples\/s.*/\1/')
    echo "speed round $r: gram $g samples/s, PyTorch $t samples/s" >&2
    gram+=("$g"); torch+=("$t")
  done
  table "pretraining step, B = 64, $threads threads | samples/s" "${gram[*]}" "${torch[*]}"
fi

if [ "$part" = all ] || [ "$part" = memory ]; then
  gram=(); torch=()
  for r in $(seq "$rounds"); do
    g=$("$bin" --vision vit-b16 --batch 4 --steps 1 --minilm "$minilm" 2>/dev/null \
        | awk '/^peak RSS/{print $3}')
    t=$( { /usr/bin/time -v "$py" benches/python/torch_pretrain.py "$minilm" --vision vit-b16 \
           --batch 4 --steps 1 --threads "$threads" >/dev/null; } 2>&1 \
         | awk '/Maximum resident/{printf "%d", $6/1024}')
    echo "memory round $r: gram $g MiB, PyTorch $t MiB" >&2
    gram+=("$g"); torch+=("$t")
  done
  table "ViT-B/16 at 224², B = 4 (16 frames), $threads threads | peak RSS MiB" "${gram[*]}" "${torch[*]}"
fi
