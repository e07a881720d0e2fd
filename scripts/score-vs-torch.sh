#!/usr/bin/env bash
# `gram score` against the published recipe in PyTorch (benches/python/torch_recipe.py score),
# whole processes on this machine's CPU: read N×512 anchors and k−1 modalities (.npy), write the
# N×N float32 volume matrix. Both sides alternate ROUNDS times; medians with the range, each
# round's own ratio — the recipe's compute alone against gram's whole process, so Python's start-up
# never counts against the recipe — and the CPU they ran on.
#   bash scripts/score-vs-torch.sh [ROUNDS] [N] [K] [THREADS]   (defaults 5 4096 3 2)
# Needs a Python with torch and numpy (PYTHON=…, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; n=${2:-4096}; k=${3:-3}; threads=${4:-2}; py=${PYTHON:-python3}
target=${CARGO_TARGET_DIR:-target}
cargo build -q --release -p gram-host --bin gram
cargo build -q --release -p gram-benches --bin cpu_scaling
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$target/release/cpu_scaling" write "$dir" "$n" "$k"
mods=(); flags=()
for t in $(seq 0 $((k - 2))); do mods+=("$dir/mod$t.npy"); flags+=(--modality "$dir/mod$t.npy"); done
export RAYON_NUM_THREADS=$threads
now() { date +%s.%N; }
gram=(); torch=(); comp=(); ratio=()
for r in $(seq "$rounds"); do
  t0=$(now); "$target/release/gram" score --anchor "$dir/anchor.npy" "${flags[@]}" --out "$dir/g.npy"; t1=$(now)
  c=$("$py" benches/python/torch_recipe.py score "$dir/anchor.npy" "${mods[@]}" --out "$dir/t.npy" \
    --threads "$threads" 2>&1 | sed -n 's/^volume matrix \([0-9.]*\) s$/\1/p'); t2=$(now)
  g=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  t=$(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.3f", b-a}')
  echo "round $r: gram $g s, recipe $t s (its volume matrix alone $c s)" >&2
  gram+=("$g"); torch+=("$t"); comp+=("$c")
  ratio+=("$(awk -v g="$g" -v t="$c" 'BEGIN{printf "%.2f", t/g}')")
done
source scripts/stats.sh
bash scripts/cpu-name.sh
echo "| N = $n, k = $k, D = 512, $threads threads, whole process | seconds, median of $rounds (range) |"
echo "|---|---|"
echo "| gram score | $(median "${gram[@]}") ($(range "${gram[@]}")) |"
echo "| published recipe, PyTorch $("$py" -c 'import torch; print(torch.__version__)') float32 | $(median "${torch[@]}") ($(range "${torch[@]}")) |"
echo "| published recipe, its volume matrix alone (no start-up, import, read, write) | $(median "${comp[@]}") ($(range "${comp[@]}")) |"
awk -v g="$(median "${gram[@]}")" -v t="$(median "${comp[@]}")" 'BEGIN{printf "recipe compute alone / gram whole process: %.2f× (medians)", t/g}'
echo "; per round $(range "${ratio[@]}"), median $(median "${ratio[@]}")×"
awk -v g="$(median "${gram[@]}")" -v t="$(median "${torch[@]}")" 'BEGIN{printf "recipe whole process / gram whole process: %.2f× (medians)\n", t/g}'
