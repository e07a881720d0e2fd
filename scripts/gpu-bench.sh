#!/usr/bin/env bash
# GPU figures for the README, on an NVIDIA machine (H100/H200 here), from binaries built
# elsewhere: `bash scripts/gpu-pack.sh` on the build machine fills gpu-carry/ (stripped, xz'd
# CUDA builds of gram-train, train_step, pretrain_step, gpu_scaling and the CUDA test binary;
# Debian's Vulkan loader and GL dispatch packages; MiniLM's config and tokenizer). Then, in
# the repository root on the GPU machine: `OUT=/some/dir bash scripts/gpu-bench.sh [parts…]`,
# parts among: info tests train recipe vulkan wgpu pretrain vitb demo raw (default: all), and
# memory (device memory per step over 40 steps, text trainable and frozen).
# `wgpu` is the check of gram-gpu's fused kernel (a few minutes): its tests on the GPU,
# gpu_scaling for k = 3, 4, 5 beside the PyTorch recipe, `gram search --backend gpu --index` over
# 10^6 × 512 against the CPU backend, and an Nsight Compute profile of the kernel.
# Everything it prints also lands in $OUT/*.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to a folder for the results}"
CARRY="${CARRY:-gpu-carry}"
parts="${*:-info tests train recipe vulkan wgpu pretrain vitb demo raw}"
BIN="$OUT/.bin"; mkdir -p "$BIN"
for f in "$CARRY"/bin/*.xz; do xz -dc "$f" >"$BIN/$(basename "$f" .xz)"; chmod +x "$BIN/$(basename "$f" .xz)"; done
PY="${PYTHON:-python3}"
# libcublas/libcurand/libcudart 13 from the PyTorch install (the driver brings libcuda).
NVLIB=$("$PY" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="${NVLIB:+$NVLIB:}${LD_LIBRARY_PATH:-}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"; chmod 0700 "$XDG_RUNTIME_DIR"
has() { [[ " $parts " == *" $1 "* ]]; }
log() { local name=$1; shift; echo "== $name: $*"; "$@" 2>&1 | tee "$OUT/$name.txt"; }
# Peak GPU memory of a command (nvidia-smi sampled every 100 ms), appended to its log.
peak() {
  local name=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/$name.mem" 2>/dev/null &
  local mon=$!
  log "$name" "$@"
  kill $mon 2>/dev/null; wait $mon 2>/dev/null
  echo "peak GPU memory used (nvidia-smi, MiB): $(sort -n "$OUT/$name.mem" | tail -1)" | tee -a "$OUT/$name.txt"
}

if has info; then
  log info bash -c "nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; lscpu | head -20; $PY -c 'import torch, sys; print(sys.version); print(\"torch\", torch.__version__, torch.version.cuda)'; $PY -c 'import transformers; print(\"transformers\", transformers.__version__)'"
fi
if has tests; then
  GRAM_REQUIRE_CUDA=1 GRAM_REPO="$PWD" GRAM_TRAIN_BIN="$BIN/gram-train" log tests "$BIN/cuda-tests" --test-threads 1 --nocapture
fi
if has train; then
  log train_step_ops "$BIN/train_step" 50 --cuda --volume ops
  log train_step_fused "$BIN/train_step" 20 --cuda --volume fused
  log train_step_bf16 "$BIN/train_step" 50 --cuda --bf16
  log torch_train_step "$PY" benches/python/torch_train_step.py 50 --device cuda
  log torch_train_step_bf16 "$PY" benches/python/torch_train_step.py 50 --device cuda --bf16
fi
if has recipe; then
  log torch_recipe "$PY" benches/python/torch_recipe.py 8192,16384,32768
fi
# Vulkan on these machines: the loader and GL dispatch libraries from Debian, NVIDIA's ICD.
vulkan_setup() {
  for d in "$CARRY"/debs/*.deb; do dpkg -x "$d" / ; done; ldconfig
  icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd*.json /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json 2>/dev/null | head -1)
  [ -n "$icd" ] && export VK_DRIVER_FILES="$icd"
  echo "ICD: ${icd:-none found}" | tee "$OUT/vulkan-icd.txt"
}
if has vulkan; then
  vulkan_setup
  for k in 3 4 5; do log "gpu_scaling_k$k" "$BIN/gpu_scaling" 8192,16384,32768 "$k" 3; done
fi
if has wgpu; then
  has vulkan || vulkan_setup
  GRAM_REQUIRE_GPU=1 GRAM_REPO="$PWD" log gram_gpu_tests "$BIN/gram-gpu-tests" --test-threads 1 --nocapture
  log wgpu_scaling_k3 "$BIN/gpu_scaling" 8192,16384,32768,65536 3 5
  log wgpu_torch_recipe "$PY" benches/python/torch_recipe.py 8192,16384,32768,65536
  for k in 4 5; do log "wgpu_scaling_k$k" "$BIN/gpu_scaling" 8192,16384,32768 "$k" 5; done
  # 10^6 candidates × 512, k = 3, 4,096 queries: unit random rows, an index, both backends.
  data="$OUT/.search"; mkdir -p "$data"
  "$PY" -c "
import numpy as np, sys
r = np.random.default_rng(0)
for name, n in (('q', 4096), ('v', 1000000), ('a', 1000000)):
    x = r.standard_normal((n, 512), dtype=np.float32); x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(sys.argv[1] + '/' + name + '.npy', x)" "$data"
  log wgpu_index_build /usr/bin/time -v "$BIN/gram" index build --modality "$data/v.npy" --modality "$data/a.npy" --out "$data/idx"
  for b in gpu cpu gpu cpu gpu cpu; do
    log "wgpu_search_$b" /usr/bin/time -f "$b %e s, peak RSS %M KB" "$BIN/gram" search --anchor "$data/q.npy" --index "$data/idx" --top-k 10 --backend "$b" --out "$data/hits-$b"
  done
  cmp "$data/hits-gpu/indices.npy" "$data/hits-cpu/indices.npy" && echo "search: GPU and CPU hits identical" | tee -a "$OUT/wgpu_search_gpu.txt"
  command -v ncu >/dev/null && log wgpu_ncu ncu --target-processes all --launch-count 3 --set full "$BIN/gpu_scaling" 8192 3 1
  rm -rf "$data"
fi
if has pretrain || has vitb; then
  if [ ! -e "$OUT/.minilm/model.safetensors" ]; then
    "$PY" scripts/random-bert.py "$CARRY/minilm-config" "$OUT/.minilm" >/dev/null 2>&1 \
      || echo "no transformers: the small BERT stands in for MiniLM"
  fi
fi
if has pretrain; then
  for b in 64 256; do
    for p in f32 bf16; do
      peak "pretrain_b${b}_$p" "$BIN/pretrain_step" --device cuda --steps 10 --batch $b --precision $p --minilm "$OUT/.minilm"
    done
    peak "torch_pretrain_b${b}_f32" "$PY" benches/python/torch_pretrain.py "$OUT/.minilm" --device cuda --steps 10 --batch $b
    peak "torch_pretrain_b${b}_bf16" "$PY" benches/python/torch_pretrain.py "$OUT/.minilm" --device cuda --steps 10 --batch $b --bf16
  done
fi
if has vitb; then
  for b in 64; do
    for p in f32 bf16; do
      peak "pretrain_vitb_b${b}_$p" "$BIN/pretrain_step" --device cuda --steps 6 --batch $b --precision $p --vision vit-b16 --minilm "$OUT/.minilm"
    done
    peak "torch_pretrain_vitb_b${b}_f32" "$PY" benches/python/torch_pretrain.py "$OUT/.minilm" --device cuda --steps 6 --batch $b --vision vit-b16
    peak "torch_pretrain_vitb_b${b}_bf16" "$PY" benches/python/torch_pretrain.py "$OUT/.minilm" --device cuda --steps 6 --batch $b --vision vit-b16 --bf16
  done
fi
if has demo; then
  log demo_cuda bash -c "time $BIN/gram-train --device cuda demo --out $OUT/demo-cuda --no-progress"
fi
if has memory; then
  # The device-memory growth (~3 min): pretrain_step prints per step the driver's
  # count and the stream-ordered pool's used (live tensors) and reserved bytes, with the text
  # encoder trainable and frozen, and with cudarc's event tracking; then the CUDA tests, whose
  # 20-step guard fails if the pool's used bytes grow.
  "$PY" scripts/random-bert.py "$CARRY/minilm-config" "$OUT/.minilm" >/dev/null 2>&1
  peak pretrain_long "$BIN/pretrain_step" --device cuda --steps 40 --batch 64 --minilm "$OUT/.minilm"
  peak pretrain_long_frozen_text "$BIN/pretrain_step" --device cuda --steps 40 --batch 64 --freeze text --minilm "$OUT/.minilm"
  GRAM_CUDA_EVENTS=1 peak pretrain_long_events "$BIN/pretrain_step" --device cuda --steps 40 --batch 64 --minilm "$OUT/.minilm"
fi
if has raw; then
  log raw_pipeline_cuda bash -c "time GRAM_TRAIN_BIN=$BIN/gram-train DEVICE=cuda bash scripts/raw-pipeline.sh $OUT/raw"
  rm -rf "$OUT/raw"
fi
echo "gpu-bench: done ($parts)"
