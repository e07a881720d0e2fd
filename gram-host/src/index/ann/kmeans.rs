//! Sign-invariant spherical k-means: unit centroids c that maximise Σ |x·c| over their members.
//!
//! Why sign-invariant: the approximate search ranks a basis vector u by (a·u)², which is even in
//! u, and a candidate's basis is defined only up to the sign of each vector. Each member is
//! counted with the sign that aligns it with its centroid (x·c ≥ 0), so u and −u fall into one
//! cell. Hand-written (a few dozen lines over the project's GEMM) because no k-means crate on
//! crates.io clusters by |cosine|.

use crate::cpu::sgemm_abt;
use rayon::prelude::*;

/// Rows per GEMM in [`assign`]: the [rows, centroids] product stays in L2 for ~100 centroids.
const CHUNK: usize = 512;

/// For each row x of `points` ([n, d]), the centroid c of largest |x·c| (the first on ties)
/// and x·c itself (signed), by f32 GEMM. Zero rows get centroid 0 and 0.
pub fn assign(points: &[f32], centroids: &[f32], d: usize) -> Vec<(u32, f32)> {
    let c = centroids.len() / d;
    let mut out = vec![(0u32, 0.0f32); points.len() / d];
    out.par_chunks_mut(CHUNK)
        .zip(points.par_chunks(CHUNK * d))
        .for_each_init(Vec::new, |buf, (o, p)| {
            buf.resize(o.len() * c, 0.0f32);
            sgemm_abt(p, centroids, d, buf);
            for (oi, row) in o.iter_mut().zip(buf.chunks_exact(c)) {
                let mut best = (0u32, 0.0f32);
                for (j, &v) in row.iter().enumerate() {
                    if v.abs() > best.1.abs() {
                        best = (j as u32, v);
                    }
                }
                *oi = best;
            }
        });
    out
}

/// `c` unit centroids (fewer if `points` has fewer rows) of the unit rows of `points` [n, d],
/// after `iters` rounds of Lloyd's algorithm from a k-means++ start (Arthur & Vassilvitskii,
/// with the sign-invariant distance 1 − (x·c)²). A centroid left without members is moved to
/// a random row. Deterministic for a given seed.
pub fn train(points: &[f32], d: usize, c: usize, iters: usize, seed: u64) -> Vec<f32> {
    let n = points.len() / d;
    let c = c.min(n);
    let mut rng = SplitMix64(seed);
    let mut cent = plus_plus(points, d, c, &mut rng);
    for _ in 0..iters {
        let mut sums = vec![0.0f64; c * d];
        for (x, &(cell, dot)) in points.chunks_exact(d).zip(&assign(points, &cent, d)) {
            let sign = if dot < 0.0 { -1.0 } else { 1.0 };
            let s = &mut sums[cell as usize * d..][..d];
            for (s, &v) in s.iter_mut().zip(x) {
                *s += sign * v as f64;
            }
        }
        for (ce, s) in cent.chunks_exact_mut(d).zip(sums.chunks_exact(d)) {
            let norm = s.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                for (o, v) in ce.iter_mut().zip(s) {
                    *o = (v / norm) as f32;
                }
            } else {
                let i = rng.below(n);
                ce.copy_from_slice(&points[i * d..(i + 1) * d]);
            }
        }
    }
    cent
}

/// k-means++ seeding: each next centroid is a row drawn with probability ∝ its distance
/// 1 − (x·c)² to the nearest centroid so far; over the first 8·c rows only (the rows come
/// shuffled), which spreads the seeds as well at a fraction of the c passes' cost.
fn plus_plus(points: &[f32], d: usize, c: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let points = &points[..(8 * c * d).min(points.len())];
    let n = points.len() / d;
    let mut cent = Vec::with_capacity(c * d);
    let mut far = vec![1.0f64; n];
    let mut pick = rng.below(n);
    for _ in 0..c {
        let p = &points[pick * d..(pick + 1) * d];
        cent.extend_from_slice(p);
        far.par_iter_mut()
            .zip(points.par_chunks_exact(d))
            .for_each(|(f, x)| {
                let dot = x.iter().zip(p).map(|(a, b)| a * b).sum::<f32>() as f64;
                *f = f.min((1.0 - dot * dot).max(0.0));
            });
        let total: f64 = far.iter().sum();
        pick = if total > 0.0 {
            let mut r = rng.next_u64() as f64 / u64::MAX as f64 * total;
            far.iter()
                .position(|&f| {
                    r -= f;
                    r <= 0.0 && f > 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.below(n)
        };
    }
    cent
}

/// SplitMix64 (Steele et al.): enough randomness to seed k-means and pick samples, and the
/// same numbers on every platform without a dependency.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n ≥ 1), by multiply-shift (bias < n/2^64).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_antipodal_clusters_as_one() {
        // Three directions in 8-D, each member ± a small perturbation, half of them negated.
        let d = 8;
        let mut rng = SplitMix64(7);
        let mut pts = Vec::new();
        for i in 0..300 {
            let axis = i % 3;
            let sign = if (i / 3) % 2 == 0 { 1.0 } else { -1.0 };
            let mut x: Vec<f32> = (0..d)
                .map(|k| {
                    let noise = (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.1;
                    sign * (if k == axis { 1.0 } else { 0.0 } + noise)
                })
                .collect();
            let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            x.iter_mut().for_each(|v| *v /= n);
            pts.extend(x);
        }
        let cent = train(&pts, d, 3, 10, 1);
        let a = assign(&pts, &cent, d);
        for axis in 0..3 {
            let cells: std::collections::HashSet<u32> =
                (axis..300).step_by(3).map(|i| a[i].0).collect();
            assert_eq!(cells.len(), 1, "axis {axis} split over {cells:?}");
            assert!((axis..300).step_by(3).all(|i| a[i].1.abs() > 0.95));
        }
    }
}
