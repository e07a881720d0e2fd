#!/usr/bin/env bash
# `gram report` as a reader sees it: train a small GRAM model with snapshots (gram-train fit
# --snapshot-every), report on the snapshots and on the last step's feature set, then open both
# pages in headless Chromium (Playwright + Debian's chromium) and check them
# (scripts/report_browser_check.py). CI runs this; SCREENSHOT=PATH also saves the README image.
# Usage: scripts/report-check.sh [WORKDIR]   (default target/report-check)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-target/report-check}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

bash scripts/need-apt.sh chromium python3-venv
[ -x "$work/venv/bin/python" ] || { python3 -m venv "$work/venv" && "$work/venv/bin/pip" install -q "playwright>=1.50"; }

cargo build -q -p gram-host -p gram-train
bin="$CARGO_TARGET_DIR/debug"
rm -rf "$work/data" "$work/run" "$work/report-snapshots" "$work/report-set"
echo "==> a small GRAM run with snapshots"
"$bin/gram-train" synth --out "$work/data" --n 1024 --seed 3
"$bin/gram-train" fit --data "$work/data" --out "$work/run" --steps 60 --batch-size 128 \
  --embed-dim 64 --snapshot-every 20 --lr 3e-3 >/dev/null
echo "==> gram report --snapshots"
"$bin/gram" report --snapshots "$work/run/snapshots" --anchor-modality text --out "$work/report-snapshots"
echo "==> gram report on the last step's embeddings"
s="$work/run/snapshots"
"$bin/gram" report --anchor "$s/60_text.npy" --modality "$s/60_video.npy" --modality "$s/60_audio.npy" \
  --names text,video,audio --out "$work/report-set"
echo "==> headless Chromium"
"$work/venv/bin/python" scripts/report_browser_check.py "$work/report-snapshots" --expect-plots 7 \
  ${SCREENSHOT:+--screenshot "$SCREENSHOT"}
"$work/venv/bin/python" scripts/report_browser_check.py "$work/report-set" --expect-plots 4
