//! Shared helpers of the benchmark binaries (`src/bin`) and criterion benches (`benches/`).

/// `n` deterministic unit rows of length `d` (xorshift, normalised in f64), row-major f32.
/// Distinct seeds give distinct streams (the seed is mixed before use, so 100 and 101 differ).
pub fn unit_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = gram_nostd::uniform::Uniform::new(seed)
        .take(n * d)
        .map(|x| x as f32)
        .collect();
    for row in v.chunks_exact_mut(d) {
        let norm = row.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt() as f32;
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Median wall time of `reps` runs of `f`, in seconds.
pub fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = std::time::Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Median, minimum and maximum of `xs` (not empty).
pub fn median_range(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The CPU a figure was measured on: model name (Linux's /proc/cpuinfo), logical CPUs, and the
/// SIMD levels that decide which kernels run (for example "Intel(R) Xeon(R) Processor, 2
/// logical CPUs, AVX-512 (F/BW/DQ/VL), AVX2+FMA").
pub fn cpu_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut simd = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            simd.push("AVX-512 (F/BW/DQ/VL)");
        }
        if has!("avx2") && has!("fma") {
            simd.push("AVX2+FMA");
        }
    }
    #[cfg(target_arch = "aarch64")]
    simd.push("NEON");
    format!("{model}, {threads} logical CPUs, {}", simd.join(", "))
}
