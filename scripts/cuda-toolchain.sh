#!/usr/bin/env bash
# CUDA 13.0 toolchain for building gram-train with `--features cuda` on a machine without CUDA
# (and without a GPU): nvcc, headers and link-time libraries from NVIDIA's PyPI wheels.
#
#   source scripts/cuda-toolchain.sh      # installs if missing (idempotent), then exports
#   cargo build --release -p gram-train --features cuda
#
# Exports PATH, CUDA_HOME, CUDA_PATH, CUDA_COMPUTE_CAP (default 90 = H100/H200; set 80 for A100
# before sourcing) and LIBRARY_PATH. Where: $GRAM_CUDA_DIR (default ~/.cache/gram-cuda13).
# Users with their own CUDA toolkit skip this and set CUDA_HOME themselves.
#
# Why 13.0 exactly: the GPU machines run driver 580 (CUDA 13.0); PTX from a newer nvcc may be
# refused by that driver. The binary needs driver >= 580 at run time (libcuda.so.1 from the
# driver; libcublas/libcurand/libcudart 13 from the same wheels or a CUDA 13 install).
#
# libcuda.so comes with a driver, which a build machine has not: like the toolkit's own
# lib/stubs/libcuda.so we link against a stub with soname libcuda.so.1 whose symbols are the
# driver API names cudarc declares; at run time the real driver's library is loaded instead.
_gram_cuda_main() {
  local dir="${GRAM_CUDA_DIR:-$HOME/.cache/gram-cuda13}"
  local cu="$dir/nvidia/cu13"
  if [ ! -x "$cu/bin/nvcc" ] || [ ! -e "$cu/lib/stubs/libcuda.so" ]; then
    echo "cuda-toolchain: installing CUDA 13.0 wheels into $dir" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$dir" \
      "nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
      "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cublas==13.0.*" \
      "nvidia-curand==10.4.0.*" "nvidia-cuda-nvrtc==13.0.*" || return 1
    # Unversioned names for the linker (cudarc links with -lcublas etc.).
    local f base
    for f in "$cu"/lib/lib*.so.*; do
      base="${f##*/}"; base="${base%%.so.*}.so"
      [ -e "$cu/lib/$base" ] || ln -s "${f##*/}" "$cu/lib/$base"
    done
    _gram_cuda_stub "$cu" || return 1
  fi
  export CUDA_HOME="$cu" CUDA_PATH="$cu"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
  case ":$PATH:" in *":$cu/bin:"*) ;; *) export PATH="$cu/bin:$PATH" ;; esac
  export LIBRARY_PATH="$cu/lib:$cu/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
}

# The libcuda.so stub: one empty function per driver API name that cudarc's bindings declare.
_gram_cuda_stub() {
  local cu="$1" src
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | sort -V | tail -1)
  if [ -z "$src" ]; then
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && cargo fetch --quiet) || return 1
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | sort -V | tail -1)
  fi
  mkdir -p "$cu/lib/stubs"
  grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$src" | sed -E 's/^\s+fn ([A-Za-z0-9_]+)\(/void \1(void){}/' \
    | sort -u >"$cu/lib/stubs/libcuda_stub.c"
  echo "cuda-toolchain: libcuda stub with $(wc -l <"$cu/lib/stubs/libcuda_stub.c") driver API names" >&2
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cu/lib/stubs/libcuda.so" "$cu/lib/stubs/libcuda_stub.c"
}

_gram_cuda_main
