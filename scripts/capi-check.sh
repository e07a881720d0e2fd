#!/usr/bin/env bash
# gram's C API from C: builds libgram_capi.a for the Cortex-M4F, compiles the C test program
# (gram-nostd/capi/tests/c) with Debian's gcc-arm-none-eabi against it and the cbindgen header,
# and runs it under QEMU (mps2-an386, semihosting); fails unless every check passes.
# `bash scripts/capi-check.sh`
set -euo pipefail
cd "$(dirname "$0")/.."
target=thumbv7em-none-eabihf
cargo build -p gram-capi --release --target "$target"
lib="${CARGO_TARGET_DIR:-target}/$target/release/libgram_capi.a"
dir=gram-nostd/capi
out=$(mktemp -d)
arm-none-eabi-gcc -std=c11 -Wall -Wextra -Werror -O2 -mcpu=cortex-m4 -mthumb -mfloat-abi=hard \
  -mfpu=fpv4-sp-d16 -ffreestanding -nostdlib -nostartfiles -I "$dir/include" -T "$dir/tests/c/link.ld" \
  "$dir/tests/c/main.c" "$lib" -lgcc -Wl,--gc-sections -Wl,--no-warn-execstack -o "$out/capi-test.elf"
log="$out/log"
timeout 120 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
  -semihosting-config enable=on,target=native -kernel "$out/capi-test.elf" 2>&1 | tee "$log"
grep -q "C API: all checks passed" "$log"
