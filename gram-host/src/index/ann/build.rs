//! Building one shard's approximate-search data from its candidates' vectors.

use super::AnnData;
use super::LIST_TARGET;
use super::kmeans::{self, SplitMix64};
use crate::simd::{self, Level};
use gram_nostd::{GramError, MAX_K, span_basis};
use rayon::prelude::*;

/// A coarse cell's fine centroids [c, dim] and each member's (fine cell, dot).
type FineCells = (Vec<f32>, Vec<(u32, f32)>);

/// Lloyd rounds for the coarse and the fine centroids.
const ITERS: usize = 4;
/// Training rows per centroid (a sample: the assignment then covers every basis vector).
const SAMPLE_PER_CELL: usize = 24;

/// The approximate-search data of `n` candidates (row j of every `[n, dim]` modality):
/// principal span bases, w, the two-level cells and their lists of int8 codes, the w order.
/// Deterministic for a given `seed`. Errors as [`span_basis`] (a non-finite vector).
pub fn build_shard(mods: &[&[f32]], n: usize, dim: usize, seed: u64) -> Result<AnnData, GramError> {
    let m = mods.len();
    if m == 0 || m >= MAX_K || n == 0 || dim == 0 {
        return Err(GramError::EmptyInput);
    }
    let mut data = AnnData {
        n,
        m,
        dim,
        w: vec![0.0; n],
        ..AnnData::default()
    };
    let mut basis = vec![0.0f32; n * m * dim];
    bases(mods, dim, &mut data.w, &mut basis)?;
    data.by_w = (0..n as u32).collect();
    let w = &data.w;
    data.by_w
        .par_sort_unstable_by(|&a, &b| w[a as usize].total_cmp(&w[b as usize]).then(a.cmp(&b)));
    let mut cell_of = vec![u32::MAX; n * m];
    data.fine_offsets = vec![0];
    // Zero rows (rank-deficient candidates: w = 0, found through the w order) are not listed.
    let entries: Vec<usize> = (0..n * m)
        .into_par_iter()
        .filter(|&e| basis[e * dim..(e + 1) * dim].iter().any(|&x| x != 0.0))
        .collect();
    if !entries.is_empty() {
        cells(&mut data, &basis, &entries, seed, &mut cell_of);
    }
    lists(&mut data, &cell_of, &basis);
    Ok(data)
}

/// Two-level cells over `entries` (the nonzero basis rows) in `data`'s coarse and fine cells
/// (≈ [`LIST_TARGET`] entries a cell); each entry's fine cell goes to `cell_of`.
fn cells(data: &mut AnnData, basis: &[f32], entries: &[usize], seed: u64, cell_of: &mut [u32]) {
    let dim = data.dim;
    let cells = (entries.len() / LIST_TARGET).max(1);
    let c1 = (cells as f64).sqrt().ceil() as usize;
    let c2 = cells.div_ceil(c1);
    let mut rng = SplitMix64(seed);
    let sample = sample_rows(basis, dim, entries, c1 * SAMPLE_PER_CELL, &mut rng);
    let coarse = kmeans::train(&sample, dim, c1, ITERS, rng.next_u64());
    let c1 = coarse.len() / dim;
    // Every row of `basis` (the zero rows, not in `entries`, are skipped after).
    let got = kmeans::assign(basis, &coarse, dim);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); c1];
    let mut gamma = vec![2.0f32; c1];
    for &e in entries {
        let (c, dot) = got[e];
        members[c as usize].push(e);
        gamma[c as usize] = gamma[c as usize].min(dot.abs() - slack(dim));
    }
    // Fine centroids and every member's fine cell, coarse cell by coarse cell.
    let fine: Vec<FineCells> = members
        .par_iter()
        .enumerate()
        .map(|(i, mem)| {
            if mem.is_empty() {
                return (Vec::new(), Vec::new());
            }
            let pts: Vec<f32> = mem
                .iter()
                .flat_map(|&e| basis[e * dim..(e + 1) * dim].iter().copied())
                .collect();
            let mut rng = SplitMix64(seed ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let all: Vec<usize> = (0..mem.len()).collect();
            let sample = sample_rows(&pts, dim, &all, c2 * SAMPLE_PER_CELL, &mut rng);
            let cent = kmeans::train(&sample, dim, c2, ITERS, rng.next_u64());
            let got = kmeans::assign(&pts, &cent, dim);
            (cent, got)
        })
        .collect();
    data.coarse.extend_from_slice(&coarse);
    data.coarse_gamma.extend_from_slice(&gamma);
    for (mem, (cent, got)) in members.iter().zip(&fine) {
        let base = data.fine.len() / dim;
        let count = cent.len() / dim;
        data.fine.extend_from_slice(cent);
        data.fine_gamma.extend(std::iter::repeat_n(2.0f32, count));
        for (&e, &(c, dot)) in mem.iter().zip(got) {
            let cell = base + c as usize;
            cell_of[e] = cell as u32;
            data.fine_gamma[cell] = data.fine_gamma[cell].min(dot.abs() - slack(dim));
        }
        data.fine_offsets.push((data.fine.len() / dim) as u32);
    }
}

/// What an f32 dot of two unit vectors of length `dim` may be off by: the dot's rounding
/// (dim·2⁻²⁴, the deterministic bound) and the vectors' roundings to f32.
pub(super) fn slack(dim: usize) -> f32 {
    (dim as f32 + 4.0) * f32::EPSILON
}

/// Every candidate's w and principal span basis (as f32 rows of `basis`), in parallel.
fn bases(mods: &[&[f32]], dim: usize, w: &mut [f64], basis: &mut [f32]) -> Result<(), GramError> {
    let m = mods.len();
    basis
        .par_chunks_mut(m * dim)
        .zip(w.par_iter_mut())
        .enumerate()
        .try_for_each_init(
            || vec![0.0f64; m * dim],
            |u, (j, (b, w))| -> Result<(), GramError> {
                let mut rows: [&[f32]; MAX_K] = [&[]; MAX_K];
                for (r, t) in rows.iter_mut().zip(mods) {
                    *r = &t[j * dim..(j + 1) * dim];
                }
                // The per-candidate f64 loops, vectorised (as the CPU backend's per-pair step).
                simd::vectorised_at(simd::level_or(Level::Avx512), || {
                    *w = span_basis(&rows[..m], u)?;
                    if *w > 0.0 && m > 1 {
                        principal(&rows[..m], u, dim);
                    }
                    for (o, &v) in b.iter_mut().zip(u.iter()) {
                        *o = v as f32;
                    }
                    Ok(())
                })
            },
        )
}

/// Rotates the orthonormal basis `u` (m rows of `dim`) of span(`rows`) onto the principal
/// axes of the normalised rows m̂_t: the left singular vectors of [m̂₁ … m̂_m], largest first.
/// With C = the coordinates of the m̂_t in `u`, the new basis is u·V for V the eigenvectors of
/// C·Cᵀ (orthogonal, so the basis stays orthonormal to rounding).
fn principal(rows: &[&[f32]], u: &mut [f64], dim: usize) {
    let m = rows.len();
    let mut cc = [0.0f64; MAX_K * MAX_K];
    let mut c = [0.0f64; MAX_K * MAX_K];
    for (t, r) in rows.iter().enumerate() {
        let norm = r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        for s in 0..m {
            let us = &u[s * dim..(s + 1) * dim];
            c[s * m + t] = us.iter().zip(*r).map(|(a, &b)| a * b as f64).sum::<f64>() / norm;
        }
    }
    for i in 0..m {
        for j in 0..m {
            cc[i * m + j] = (0..m).map(|t| c[i * m + t] * c[j * m + t]).sum();
        }
    }
    let v = jacobi_eigenvectors(&mut cc[..m * m], m);
    let old = u.to_vec();
    for (r, out) in u.chunks_exact_mut(dim).enumerate() {
        out.fill(0.0);
        for s in 0..m {
            let f = v[s * m + r];
            for (o, x) in out.iter_mut().zip(&old[s * dim..(s + 1) * dim]) {
                *o += f * x;
            }
        }
    }
}

/// Eigenvectors of the symmetric m×m matrix `a` (destroyed) by cyclic Jacobi rotations, as
/// the columns of the returned m×m matrix, ordered by descending eigenvalue. Converges to
/// off-diagonal mass below 1e-30 of the total (quadratically; ≤ 30 sweeps). Hand-written: a
/// linear-algebra crate for a ≤ 15×15 symmetric matrix per candidate is not worth the weight.
fn jacobi_eigenvectors(a: &mut [f64], m: usize) -> [f64; MAX_K * MAX_K] {
    let mut v = [0.0f64; MAX_K * MAX_K];
    for i in 0..m {
        v[i * m + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _ in 0..30 {
        let off: f64 = (0..m)
            .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * m + j].powi(2))
            .sum();
        if off <= 1e-30 * total {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let cs = 1.0 / (t * t + 1.0).sqrt();
                let sn = t * cs;
                for k in 0..m {
                    let (akp, akq) = (a[k * m + p], a[k * m + q]);
                    a[k * m + p] = cs * akp - sn * akq;
                    a[k * m + q] = sn * akp + cs * akq;
                }
                for k in 0..m {
                    let (apk, aqk) = (a[p * m + k], a[q * m + k]);
                    a[p * m + k] = cs * apk - sn * aqk;
                    a[q * m + k] = sn * apk + cs * aqk;
                }
                for k in 0..m {
                    let (vkp, vkq) = (v[k * m + p], v[k * m + q]);
                    v[k * m + p] = cs * vkp - sn * vkq;
                    v[k * m + q] = sn * vkp + cs * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&x, &y| a[y * m + y].total_cmp(&a[x * m + x]));
    let mut out = [0.0f64; MAX_K * MAX_K];
    for (c, &o) in order.iter().enumerate() {
        for r in 0..m {
            out[r * m + c] = v[r * m + o];
        }
    }
    out
}

/// int8 code of the f32 unit vector `u`: q = round(u / s), s = max|u_i| / 127. Returns s and
/// an upper bound on ‖u* − s·q‖ for the f64 vector u* that `u` rounds (0 and 0 for zero).
pub(super) fn quantise(u: &[f32], q: &mut [i8]) -> (f32, f32) {
    let amax = u.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    if amax == 0.0 {
        q.fill(0);
        return (0.0, 0.0);
    }
    let s = amax / 127.0;
    let mut err2 = 0.0f64;
    for (o, &v) in q.iter_mut().zip(u) {
        let c = (v / s).round().clamp(-127.0, 127.0);
        *o = c as i8;
        err2 += (v as f64 - s as f64 * c as f64).powi(2);
    }
    // ‖u* − u‖ ≤ 2⁻²⁴‖u‖ (rounding to f32), then rounded up past f32's rounding.
    (s, ((err2.sqrt() + 1e-7) * (1.0 + 1e-6)) as f32)
}

/// Up to `count` rows of `rows` (indices into `points`), drawn without replacement, copied.
fn sample_rows(
    points: &[f32],
    dim: usize,
    rows: &[usize],
    count: usize,
    rng: &mut SplitMix64,
) -> Vec<f32> {
    let mut pick = rows.to_vec();
    let count = count.min(pick.len());
    for i in 0..count {
        let j = i + rng.below(pick.len() - i);
        pick.swap(i, j);
    }
    pick[..count]
        .iter()
        .flat_map(|&e| points[e * dim..(e + 1) * dim].iter().copied())
        .collect()
}

/// The inverted lists in cell order (counting sort): each entry's candidate, code, scale,
/// error bound and w.
fn lists(data: &mut AnnData, cell_of: &[u32], basis: &[f32]) {
    let (m, dim) = (data.m, data.dim);
    let cells = data.fine_gamma.len();
    let mut offsets = vec![0u32; cells + 1];
    for &c in cell_of.iter().filter(|&&c| c != u32::MAX) {
        offsets[c as usize + 1] += 1;
    }
    for i in 0..cells {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets.clone();
    let total = offsets[cells] as usize;
    let mut order = vec![0u32; total];
    for (e, &c) in cell_of.iter().enumerate().filter(|(_, c)| **c != u32::MAX) {
        order[next[c as usize] as usize] = e as u32;
        next[c as usize] += 1;
    }
    data.list_ids = order.iter().map(|&e| e / m as u32).collect();
    data.list_w = data.list_ids.iter().map(|&j| data.w[j as usize]).collect();
    data.list_codes = vec![0i8; total * dim];
    let (mut scale, mut err) = (vec![0.0f32; total], vec![0.0f32; total]);
    data.list_codes
        .par_chunks_mut(dim)
        .zip(scale.par_iter_mut().zip(err.par_iter_mut()))
        .zip(&order)
        .for_each(|((q, (s, r)), &e)| {
            (*s, *r) = quantise(&basis[e as usize * dim..(e as usize + 1) * dim], q);
        });
    (data.list_offsets, data.list_scale, data.list_err) = (offsets, scale, err);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_basis_of_two_unit_vectors_is_their_sum_and_difference() {
        let d = 6;
        let m1: Vec<f32> = vec![0.6, 0.8, 0.0, 0.0, 0.0, 0.0];
        let m2: Vec<f32> = vec![0.0, 0.6, 0.8, 0.0, 0.0, 0.0];
        let mut u = vec![0.0f64; 2 * d];
        span_basis(&[&m1[..], &m2[..]], &mut u).unwrap();
        principal(&[&m1[..], &m2[..]], &mut u, d);
        let sum: Vec<f64> = m1.iter().zip(&m2).map(|(a, b)| (a + b) as f64).collect();
        let diff: Vec<f64> = m1.iter().zip(&m2).map(|(a, b)| (a - b) as f64).collect();
        for (row, want) in [(0, &sum), (1, &diff)] {
            let norm = want.iter().map(|x| x * x).sum::<f64>().sqrt();
            let cos: f64 = u[row * d..(row + 1) * d]
                .iter()
                .zip(want.iter())
                .map(|(a, b)| a * b / norm)
                .sum();
            assert!((cos.abs() - 1.0).abs() < 1e-12, "row {row}: cos {cos}");
        }
    }

    #[test]
    fn the_volume_is_w_times_the_anchor_off_the_span() {
        // vol(a, M)² = w·(‖a‖² − Σ_t (a·u_t)²), against gram-nostd's volume, k = 2 … 5.
        let mut rng = SplitMix64(3);
        let d = 9;
        let mut vector = || -> Vec<f32> {
            (0..d)
                .map(|_| (rng.below(2001) as f32 - 1000.0) / 500.0)
                .collect()
        };
        for m in 1..5 {
            for _ in 0..50 {
                let a = vector();
                let mods: Vec<Vec<f32>> = (0..m).map(|_| vector()).collect();
                let rows: Vec<&[f32]> = mods.iter().map(Vec::as_slice).collect();
                let mut u = vec![0.0f64; m * d];
                let w = span_basis(&rows, &mut u).unwrap();
                principal(&rows, &mut u, d);
                let aa: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
                let along: f64 = u
                    .chunks_exact(d)
                    .map(|ut| {
                        ut.iter()
                            .zip(&a)
                            .map(|(x, y)| x * *y as f64)
                            .sum::<f64>()
                            .powi(2)
                    })
                    .sum();
                let mut all = vec![&a[..]];
                all.extend(rows.iter().copied());
                let want = gram_nostd::volume(&all).unwrap().powi(2);
                let got = w * (aa - along);
                assert!(
                    (got - want).abs() <= 1e-9 * (w * aa),
                    "m = {m}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn jacobi_matches_a_known_spectrum_and_codes_bound_their_error() {
        // Q·diag(5, 2, 1)·Qᵀ for a rotation Q: eigenvectors are Q's columns, in that order.
        let (c, s) = (0.8f64, 0.6f64);
        let q = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0];
        let l = [5.0, 2.0, 1.0];
        let mut a = [0.0f64; 9];
        for i in 0..3 {
            for j in 0..3 {
                a[i * 3 + j] = (0..3).map(|k| q[i * 3 + k] * l[k] * q[j * 3 + k]).sum();
            }
        }
        let v = jacobi_eigenvectors(&mut a, 3);
        for col in 0..3 {
            let dot: f64 = (0..3).map(|r| v[r * 3 + col] * q[r * 3 + col]).sum();
            assert!((dot.abs() - 1.0).abs() < 1e-12, "column {col}: {dot}");
        }
        let u: Vec<f32> = (0..37)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 20.0)
            .collect();
        let mut q = vec![0i8; 37];
        let (sc, err) = quantise(&u, &mut q);
        let real: f64 = u
            .iter()
            .zip(&q)
            .map(|(&x, &c)| (x as f64 - sc as f64 * c as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            real <= err as f64 && err as f64 <= real + 1e-6,
            "{real} vs {err}"
        );
    }
}
