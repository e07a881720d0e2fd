#!/usr/bin/env bash
# The Python package end to end, as CI runs it: build the wheel with maturin (release, abi3),
# install it into a fresh venv with numpy, pytest, Dask's distributed (the local-cluster tests of
# gram.distributed) and PyTorch (CPU use; PyPI's wheel), and run
# gram-host/python/tests against the `gram` CLI built from the same tree.
# Usage: scripts/python-check.sh   (GRAM_PY_TORCH="" leaves PyTorch out: its tests then skip)
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/python-check
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

python3 -m venv --help >/dev/null 2>&1 || bash scripts/need-apt.sh python3-venv

echo "==> maturin build (gram-host/python)"
[ -x "$work/build/bin/maturin" ] || { python3 -m venv "$work/build" && "$work/build/bin/pip" install -q "maturin>=1.9,<2"; }
rm -rf "$work/wheels"
"$work/build/bin/maturin" build --release -m gram-host/python/Cargo.toml -o "$work/wheels"

echo "==> fresh venv: the wheel, numpy, pytest, Dask's distributed ${GRAM_PY_TORCH-torch}"
rm -rf "$work/test"
# PyPI's torch wheel brings CUDA libraries: the venv takes ~5 GiB, so it goes when the check ends
# (pip's own download cache keeps the next run fast).
trap 'rm -rf "$work/test"' EXIT
df -h --output=avail,target "$PWD" | tail -n 1 | sed 's/^/free disk: /'
python3 -m venv "$work/test"
# shellcheck disable=SC2086 # GRAM_PY_TORCH is a list of requirements (or empty)
"$work/test/bin/pip" install -q "$work/wheels"/gram-*.whl pytest distributed ${GRAM_PY_TORCH-torch}

echo "==> pytest"
cargo build -q -p gram-host
GRAM_BIN="$CARGO_TARGET_DIR/debug/gram" GRAM_REQUIRE_CLI=1 GRAM_REQUIRE_DASK=1 \
  "$work/test/bin/python" -m pytest -q -p no:cacheprovider gram-host/python/tests
