#!/usr/bin/env bash
# Corpus-scale retrieval benchmark: index build, index search and the GEMMs of the
# same shapes, on this machine, in one run. Peak RSS from /usr/bin/time -v.
#   bash scripts/index-bench.sh [DIR] [N] [D] [Q,Q…]   (defaults: /tmp/gram-index-bench 1000000 512 256,4096)
# Needs 2·N·D·4 bytes of disk for the corpus and as much again for the index.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/gram-index-bench}; n=${2:-1000000}; d=${3:-512}; qs=${4:-256,4096}
cargo build -q --release -p gram-host --bin gram -p gram-benches --bin index_bench
rel="${CARGO_TARGET_DIR:-target}/release"; gram=$rel/gram; bench=$rel/index_bench
rm -rf "$dir"; mkdir -p "$dir"
echo "generating $n candidates × 2 modalities, D = $d, queries $qs in $dir" >&2
$bench gen "$dir" "$n" "$qs" "$d"
timed() { # timed LOG cmd…: run, keep stderr+time output in LOG
  local log=$1; shift
  /usr/bin/time -v "$@" 2>"$log" >"$log.out" || { cat "$log"; exit 1; }
}
wall() { awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$1"; }
rss_gb() { awk -F': ' '/Maximum resident set size/{printf "%.2f", $2/1048576}' "$1"; }
sync
timed "$dir/build.log" $gram index build --modality "$dir/v.npy" --modality "$dir/a.npy" --out "$dir/idx"
size=$(du -sb "$dir/idx" | cut -f1)
echo "| step | queries | wall s (median) | peak RSS GB | pairs/s | GEMMs s (median) | search / GEMMs |"
echo "|---|---|---|---|---|---|---|"
echo "| index build | – | $(wall "$dir/build.log") | $(rss_gb "$dir/build.log") | – | – | – |"
echo "index size: $(awk -v s="$size" 'BEGIN{printf "%.2f GB", s/1e9}'); $(cat "$dir/build.log.out")" >&2
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for q in ${qs//,/ }; do
  # Both sides, alternating, 3 times (once for ≥ 2048 queries); medians reported.
  reps=3; [ "$q" -ge 2048 ] && reps=1
  gs=(); ws=()
  for _ in $(seq $reps); do
    g=$($bench gemm "$dir" "$q")
    gs+=("$(sed 's/.*"gemm_s":\([0-9.e+-]*\).*/\1/' <<<"$g")")
    timed "$dir/search$q.log" $gram search --index "$dir/idx" --anchor "$dir/q$q.npy" --top-k 10 --out "$dir/hits$q" -v
    ws+=("$(wall "$dir/search$q.log")")
  done
  g=$(printf '%s\n' "${gs[@]}" | median); w=$(printf '%s\n' "${ws[@]}" | median)
  awk -v q="$q" -v n="$n" -v w="$w" -v g="$g" -v r="$(rss_gb "$dir/search$q.log")" \
    'BEGIN{printf "| search top-10 | %d | %.2f | %s | %.3g | %.2f | %.2f |\n", q, w, r, q*n/w, g, w/g}'
  echo "search $q: walls ${ws[*]}; GEMMs ${gs[*]}" >&2
  grep searched "$dir/search$q.log" >&2 || true
done
echo "index size $(awk -v s="$size" 'BEGIN{printf "%.2f", s/1e9}') GB; N = $n, D = $d, k = 3, $(nproc) threads"
