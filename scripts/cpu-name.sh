#!/usr/bin/env bash
# One line naming the CPU a figure comes from: model, logical CPUs and the SIMD levels that
# decide which kernels run (printed by every comparison script beside its table).
model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
simd=()
for f in avx512f avx512bw avx512vl avx512_bf16 avx2 fma; do
  [[ " $flags " == *" $f "* ]] && simd+=("$f")
done
echo "CPU: ${model:-$(uname -m)}, $(nproc) logical CPUs, $(IFS=,; echo "${simd[*]:-no AVX}")"
