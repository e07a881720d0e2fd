#!/usr/bin/env bash
# The code on aarch64 (Arm servers and laptops) from this x86-64 machine: every crate of the
# workspace cross-checked for aarch64-unknown-linux-gnu, then under QEMU user mode the tests of
# gram-nostd, gram-host's library tests (the CPU backend and its GEMM) and gram-train's
# floating-point mode (FPCR.FZ; fp_mode.rs has no dependencies, so it is compiled alone).
# Needs: rustup target aarch64-unknown-linux-gnu; Debian's gcc-aarch64-linux-gnu,
# g++-aarch64-linux-gnu (C/C++ of -sys crates), libc6-dev-arm64-cross and qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
t=aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo check --target "$t" --workspace --all-targets
cargo test --target "$t" -p gram-nostd
cargo test --target "$t" -p gram-host --no-default-features --lib
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
rustc --edition 2024 --test --target "$t" -C linker=aarch64-linux-gnu-gcc \
  gram-train/src/fp_mode.rs -o "$out/fp_mode"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/fp_mode"
