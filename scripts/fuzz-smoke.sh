#!/usr/bin/env bash
# Run every cargo-fuzz target for SECONDS (default 60) on the nightly toolchain, starting from
# the committed seed corpora (copied, so the repository stays clean). A crash fails the script
# and leaves the reproducer under fuzz/artifacts/. Usage: scripts/fuzz-smoke.sh [SECONDS] [TARGET…]
# FUZZ_SEED=N fixes libFuzzer's seed (CI uses 1, so its smoke is repeatable); 0 = random.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(volume readers cli)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz-smoke: no nightly toolchain; skipped"; exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "==> fuzz target $t for ${seconds}s"
  # 512 MiB per allocation is far beyond any input here (≤ 64 KiB): an allocation that large
  # means a reader trusted a header over the bytes it has.
  status=0
  cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -seed="${FUZZ_SEED:-0}" -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
    -print_final_stats=1 >"$work/$t.log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)|ERROR|SUMMARY|panicked" "$work/$t.log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$work/$t.log"
    echo "fuzz-smoke: target $t FAILED (reproducer under fuzz/artifacts/$t)"
    exit 1
  fi
done
echo "fuzz-smoke: ${targets[*]} ran ${seconds}s each without a crash"
