#!/usr/bin/env bash
# Build the CUDA binaries here (no GPU needed; scripts/cuda-toolchain.sh) and pack what
# scripts/gpu-bench.sh needs on the GPU machine into gpu-carry/ (kept out of git): stripped,
# xz-compressed binaries, Debian's Vulkan loader + GL dispatch packages, MiniLM's config and
# tokenizer (its weights are regenerated there at random by scripts/random-bert.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-toolchain.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
cargo build --release -p gram-train -p gram-benches --features gram-train/cuda,gram-benches/cuda
test_bin=$(cargo test --release -p gram-train --features cuda --test cuda --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | grep '/cuda-' | head -1 | cut -d'"' -f4)
mkdir -p gpu-carry/bin gpu-carry/debs gpu-carry/minilm-config
cargo build --release -p gram-host --bin gram
gpu_test_bin=$(cargo test --release -p gram-gpu --test gpu --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | grep '/gpu-' | head -1 | cut -d'"' -f4)
for b in gram gram-train train_step pretrain_step gpu_scaling; do
  strip -o "gpu-carry/bin/$b" "$CARGO_TARGET_DIR/release/$b"
done
strip -o gpu-carry/bin/cuda-tests "$test_bin"
strip -o gpu-carry/bin/gram-gpu-tests "$gpu_test_bin"
xz -T0 -6 -f gpu-carry/bin/gram gpu-carry/bin/gram-gpu-tests gpu-carry/bin/gram-train gpu-carry/bin/train_step gpu-carry/bin/pretrain_step gpu-carry/bin/gpu_scaling gpu-carry/bin/cuda-tests
(cd gpu-carry/debs && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
[ -d target/models/all-MiniLM-L6-v2 ] || bash scripts/fetch-minilm.sh
cp target/models/all-MiniLM-L6-v2/{config.json,tokenizer.json,tokenizer_config.json,vocab.txt,special_tokens_map.json} gpu-carry/minilm-config/
du -sh gpu-carry
