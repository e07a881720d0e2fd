#!/usr/bin/env bash
# The matched CPU training-step comparison (CPU named beside the table): gram-train's GRAM step (`train_step`)
# against the published PyTorch recipe (`benches/python/torch_train_step.py`), same model and
# sizes (hidden 256, embedding 64, B = 256, AdamW at constant lr, no DAM), alternating the two
# sides ROUNDS times on this machine and printing every run and the medians.
#   bash scripts/train-step-vs-torch.sh [ROUNDS] [STEPS] [THREADS] [LOSS]   (defaults 5 200 2 gram;
#   LOSS pairwise: the CLIP-style pairwise InfoNCE baseline on both sides)
# Needs a Python with torch (PYTHON=…, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; steps=${2:-200}; threads=${3:-2}; loss=${4:-gram}; py=${PYTHON:-python3}
shape=(--in 384,512,256 --hidden 256 --out 64 --loss "$loss")
cargo build -q --release -p gram-benches --bin train_step
export RAYON_NUM_THREADS=$threads
gram=(); torch=()
for r in $(seq "$rounds"); do
  g=$("${CARGO_TARGET_DIR:-target}/release/train_step" "$steps" "${shape[@]}" | tail -1 | awk -F'|' '{print $2+0}')
  t=$("$py" benches/python/torch_train_step.py "$steps" "${shape[@]}" --threads "$threads" | tail -1 | awk -F'|' '{print $2+0}')
  echo "round $r: gram $g samples/s, PyTorch $t samples/s" >&2
  gram+=("$g"); torch+=("$t")
done
source scripts/stats.sh
mg=$(median "${gram[@]}"); mt=$(median "${torch[@]}")
bash scripts/cpu-name.sh
echo "| side ($loss loss) | samples/s, median of $rounds (range) |"
echo "|---|---|"
echo "| gram-train | $mg ($(printf '%s\n' "${gram[@]}" | sort -g | head -1)–$(printf '%s\n' "${gram[@]}" | sort -g | tail -1)) |"
echo "| PyTorch $("$py" -c 'import torch; print(torch.__version__)') | $mt ($(printf '%s\n' "${torch[@]}" | sort -g | head -1)–$(printf '%s\n' "${torch[@]}" | sort -g | tail -1)) |"
awk -v g="$mg" -v t="$mt" 'BEGIN{printf "gram / PyTorch: %.2f\n", g/t}'
