#!/usr/bin/env bash
# The adversarial stress test (≥ 10^6 hostile tuples; see gram-host/tests/stress.rs), in release.
# GRAM_STRESS_PER_CATEGORY=N changes the tuples per category (default 170000 × 6 categories).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p gram-host --test stress -- --ignored --nocapture
