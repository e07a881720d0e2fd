#!/usr/bin/env bash
# gram-gpu in a real browser: build the page (gram-gpu/web, wasm32 + wasm-bindgen), serve it on
# localhost, run it in headless Chromium with WebGPU (Debian's chromium, Playwright from PyPI) and
# check the WebGPU results against gram-nostd on the CPU in the same wasm module. The last line is
# `browser: OK adapter=<name> pairs=<n> max_rel_err=<e>`, or the script fails.
# Usage: scripts/browser-check.sh [QUERY]   e.g. "n1=256&n2=2048&dim=256&k=4"; SCREENSHOT=PATH saves one.
set -euo pipefail
cd "$(dirname "$0")/.."
query="${1:-n1=128&n2=512&dim=64&k=3&topk=10}"
work=target/browser-check
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/, ""); print}' Cargo.lock)

bash scripts/need-apt.sh chromium python3-venv
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  cargo install wasm-bindgen-cli --version "$wb_version"
fi
[ -x "$work/venv/bin/python" ] || { python3 -m venv "$work/venv" && "$work/venv/bin/pip" install -q "playwright>=1.50"; }

echo "==> build the page (wasm32, wasm-bindgen $wb_version)"
cargo build -q -p gram-web --release --target wasm32-unknown-unknown
rm -rf "$work/site"
mkdir -p "$work/site"
cp gram-gpu/web/index.html gram-gpu/web/main.js "$work/site/"
wasm-bindgen --target web --no-typescript --out-dir "$work/site/pkg" \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/gram_web.wasm"

echo "==> serve on localhost and run in headless Chromium"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/site" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
  sleep 0.1
done
ref=testdata/reference/random_k3
"$work/venv/bin/python" scripts/browser_check.py "http://127.0.0.1:$port/?auto=1&$query" \
  --files "${ref}_anchor.npy" "${ref}_mod0.npy" "${ref}_mod1.npy" ${SCREENSHOT:+--screenshot "$SCREENSHOT"}
