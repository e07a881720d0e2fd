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
