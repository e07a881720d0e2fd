#!/usr/bin/env bash
# The firmware under QEMU on every edge target, with instruction counting (-icount shift=0): its
# checks (exact cases, contracts, stack ≤ 8 KiB per entry point) must pass; it prints the
# instruction table against the naive float32 recipe. Then the code size of an application using
# the library (Cortex-M4: .text ≤ 48 kB). Targets: Cortex-M4F (thumbv7em-none-eabihf, mps2-an386),
# RV32IMAC without FPU and RV32IMAFC (virt). Needs qemu-system-arm, qemu-system-misc and the three
# rustup targets. `bash scripts/firmware-check.sh [TARGET ...]`
set -euo pipefail
cd "$(dirname "$0")/../gram-nostd/firmware"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(thumbv7em-none-eabihf riscv32imac-unknown-none-elf riscv32imafc-unknown-none-elf)
log=$(mktemp)
for target in "${targets[@]}"; do
  echo "--- firmware on $target"
  if timeout 600 cargo run --release --target "$target" >"$log" 2>&1; then
    cat "$log"
  else
    cat "$log"; echo "firmware run on $target FAILED"; exit 1
  fi
  grep -q "firmware: all checks passed" "$log"
done
echo "--- code size (Cortex-M4F, release, opt-level s, LTO)"
timeout 120 cargo run --release --example size --target thumbv7em-none-eabihf 2>/dev/null | tee "$log"
size=$(sed -n 's/.*\.text \([0-9]*\) bytes.*/\1/p' "$log")
[ -n "$size" ] && [ "$size" -le 49152 ] || { echo "firmware .text ${size:-?} bytes: above 48 kB"; exit 1; }
