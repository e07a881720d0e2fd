#!/usr/bin/env bash
# The approximate index against the exact search on embeddings of a trained model, in one run
# on this machine:
#   bash scripts/ann-bench.sh [DIR] [N] [D] [Q] [ROUNDS] [P:L:R,…]
#   (defaults: /tmp/gram-ann-bench 1000000 512 1000 5 and a sweep of --probe; BUILD_ROUNDS=R
#   times the builds R times instead of ROUNDS; SEARCH=0 stops after the builds)
# 1. A model: `gram-train synth` (noise 0.25, unique 4: a model that ranks its own sample first
#    among 8,192 about 30 % of the time) and `gram-train fit` to D dimensions.
# 2. A corpus drawn from the same world through that model (`ann_bench corpus`): N candidates
#    (video, audio) and Q held-out queries (text).
# 3. `gram index build` without and with --ann, alternating, ROUNDS times each (wall time and
#    peak RSS from /usr/bin/time -v; only one index is kept on disk at a time).
# 4. `ann_bench search`: the exact search (ground truth, reference speed) and each setting,
#    alternating, ROUNDS rounds; then the peak RSS of one `gram search --approx` process.
# Needs about 2·N·D·4 bytes of disk for the corpus, 1.4 times that for the index.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/gram-ann-bench}; n=${2:-1000000}; d=${3:-512}; q=${4:-1000}; rounds=${5:-5}
settings=${6:-32:32:50,64:32:100,128:32:100,128:32:200,192:32:200,256:32:300}
cargo build -q --release -p gram-host --bin gram -p gram-train --bin gram-train -p gram-benches --bin ann_bench
rel="${CARGO_TARGET_DIR:-target}/release"
echo "machine: $(bash scripts/cpu-name.sh 2>/dev/null || grep -m1 'model name' /proc/cpuinfo), $(nproc) threads; $(date -u +%F)"
mkdir -p "$dir"
if [ ! -f "$dir/corpus-$n-$d/q.npy" ]; then
  rm -rf "$dir/synth" "$dir/model-$d" "$dir"/corpus-*
  "$rel/gram-train" synth --out "$dir/synth" --n 65536 --dims 64,64,64 --seed 5 --noise 0.25 --unique 4 >/dev/null
  "$rel/gram-train" fit --data "$dir/synth" --out "$dir/model-$d" --steps 1500 --batch-size 256 \
    --embed-dim "$d" --no-progress | tail -n 1 | sed 's/^/model: /' | cut -c1-200
  "$rel/ann_bench" corpus "$dir/synth" "$dir/model-$d" "$dir/corpus-$n-$d" "$n" "$q"
fi
c="$dir/corpus-$n-$d"
wall() { awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$1"; }
rss_gb() { awk -F': ' '/Maximum resident set size/{printf "%.2f", $2/1048576}' "$1"; }
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)] " (" a[1] "–" a[NR] ")"}'; }
build() { # build LOG [--ann]
  rm -rf "$c/idx"; sync
  /usr/bin/time -v "$rel/gram" index build --modality "$c/cand0.npy" --modality "$c/cand1.npy" \
    --out "$c/idx" "${@:2}" >"$1.out" 2>"$1" || { cat "$1"; exit 1; }
}
exact=(); ann=()
for r in $(seq "${BUILD_ROUNDS:-$rounds}"); do
  build "$dir/build-exact.log"; exact+=("$(wall "$dir/build-exact.log")")
  exact_size=$(du -sb "$c/idx" | cut -f1); exact_rss=$(rss_gb "$dir/build-exact.log")
  build "$dir/build-ann.log" --ann; ann+=("$(wall "$dir/build-ann.log")")
  echo "build round $r: exact ${exact[-1]}s, --ann ${ann[-1]}s; $(cat "$dir/build-ann.log.out")" >&2
done
ann_size=$(du -sb "$c/idx" | cut -f1)
echo "N = $n, D = $d, k = 3, $q queries; $(grep -c . <<<"$(ls "$c/idx"/shard-*)") shard(s)"
echo "| build | wall s, median (range) of ${BUILD_ROUNDS:-$rounds} | peak RSS GB | index GB |"
echo "|---|---|---|---|"
echo "| exact | $(printf '%s\n' "${exact[@]}" | median) | $exact_rss | $(awk -v s="$exact_size" 'BEGIN{printf "%.2f", s/1e9}') |"
echo "| --ann | $(printf '%s\n' "${ann[@]}" | median) | $(rss_gb "$dir/build-ann.log") | $(awk -v s="$ann_size" 'BEGIN{printf "%.2f", s/1e9}') |"
[ "${SEARCH:-1}" = 0 ] && exit 0
"$rel/ann_bench" search "$c/idx" "$c/q.npy" 10 "$rounds" "$settings"
# Peak RSS of whole processes (the index mapped, the codes read), exact and at the middle setting.
mid=$(tr ',' '\n' <<<"$settings" | awk '{a[NR]=$0} END{print a[int((NR+1)/2)]}')
IFS=: read -r p l rr <<<"$mid"
/usr/bin/time -v "$rel/gram" search --index "$c/idx" --anchor "$c/q.npy" --top-k 10 --out "$dir/hits-exact" 2>"$dir/rss-exact.log" >/dev/null
/usr/bin/time -v "$rel/gram" search --index "$c/idx" --anchor "$c/q.npy" --top-k 10 --out "$dir/hits-approx" \
  --approx --probe "$p" --low-w "$l" --rerank "$rr" 2>"$dir/rss-approx.log" >/dev/null
echo "peak RSS: exact search $(rss_gb "$dir/rss-exact.log") GB, approximate ($mid) $(rss_gb "$dir/rss-approx.log") GB; exact index $(awk -v s="$exact_size" 'BEGIN{printf "%.2f", s/1e9}') GB"
grep "approximate search" "$dir/rss-approx.log" || true
