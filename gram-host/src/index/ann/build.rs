//! Building one shard's approximate-search data from its candidates' vectors.

use super::kmeans::{self, SplitMix64};
use super::{AnnData, LIST_TARGET};
use gram_nostd::{GramError, MAX_K, span_basis};
use rayon::prelude::*;

/// A coarse cell's fine centroids [c, dim] and each member's (fine cell, dot).
type FineCells = (Vec<f32>, Vec<(u32, f32)>);

/// Lloyd rounds for the coarse and the fine centroids.
const ITERS: usize = 8;
/// Training rows per centroid (a sample: the assignment then covers every basis vector).
const SAMPLE_PER_CELL: usize = 48;

/// The approximate-search data of `n` candidates (row j of every `[n, dim]` modality):
/// span bases, w, int8 codes, the two-level cells and their lists, the w order. Deterministic
/// for a given `seed`. Errors as [`span_basis`] (a non-finite vector).
pub fn build_shard(mods: &[&[f32]], n: usize, dim: usize, seed: u64) -> Result<AnnData, GramError> {
    let m = mods.len();
    if m == 0 || m >= MAX_K || n == 0 || dim == 0 {
        return Err(GramError::EmptyInput);
    }
    let mut data = AnnData::empty(n, m, dim);
    let mut basis = vec![0.0f32; n * m * dim];
    encode(mods, dim, &mut data, &mut basis)?;
    let entries: Vec<usize> = (0..n * m).filter(|&e| data.code_scale[e] > 0.0).collect();
    let cells = (entries.len() / LIST_TARGET).max(1);
    let c1 = (cells as f64).sqrt().ceil() as usize;
    let c2 = cells.div_ceil(c1);
    let mut rng = SplitMix64(seed);
    let sample = sample_rows(&basis, dim, &entries, c1 * SAMPLE_PER_CELL, &mut rng);
    data.coarse = kmeans::train(&sample, dim, c1, ITERS, rng.next_u64());
    let coarse_of = kmeans::assign(&basis, &data.coarse, dim);
    let c1 = data.coarse.len() / dim;
    data.coarse_gamma = vec![2.0; c1];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); c1];
    for &e in &entries {
        let (c, dot) = coarse_of[e];
        members[c as usize].push(e);
        let g = &mut data.coarse_gamma[c as usize];
        *g = g.min(dot.abs() - slack(dim));
    }
    // Fine centroids and every member's fine cell, coarse cell by coarse cell.
    let fine: Vec<FineCells> = members
        .par_iter()
        .enumerate()
        .map(|(i, mem)| {
            let pts: Vec<f32> = mem
                .iter()
                .flat_map(|&e| basis[e * dim..(e + 1) * dim].iter().copied())
                .collect();
            if mem.is_empty() {
                return (Vec::new(), Vec::new());
            }
            let mut rng = SplitMix64(seed ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let all: Vec<usize> = (0..mem.len()).collect();
            let sample = sample_rows(&pts, dim, &all, c2 * SAMPLE_PER_CELL, &mut rng);
            let cent = kmeans::train(&sample, dim, c2, ITERS, rng.next_u64());
            let got = kmeans::assign(&pts, &cent, dim);
            (cent, got)
        })
        .collect();
    let mut cell_of = vec![u32::MAX; n * m];
    data.fine_offsets = vec![0];
    for (mem, (cent, got)) in members.iter().zip(&fine) {
        let base = data.fine.len() / dim;
        data.fine.extend_from_slice(cent);
        data.fine_gamma
            .extend(std::iter::repeat_n(2.0f32, cent.len() / dim));
        for (&e, &(c, dot)) in mem.iter().zip(got) {
            let cell = base + c as usize;
            cell_of[e] = cell as u32;
            let g = &mut data.fine_gamma[cell];
            *g = g.min(dot.abs() - slack(dim));
        }
        data.fine_offsets.push((data.fine.len() / dim) as u32);
    }
    lists(&mut data, &cell_of, m);
    data.by_w = (0..n as u32).collect();
    let w = &data.w;
    data.by_w
        .par_sort_unstable_by(|&a, &b| w[a as usize].total_cmp(&w[b as usize]).then(a.cmp(&b)));
    Ok(data)
}

/// What an f32 dot of two unit vectors of length `dim` (one rounded from f64) may be off by:
/// the dot's rounding (dim·2⁻²⁴, deterministic bound) and the two roundings to f32.
pub(super) fn slack(dim: usize) -> f32 {
    (dim as f32 + 4.0) * f32::EPSILON
}

/// Span bases (as f32 rows of `basis`), w and the int8 codes of every candidate, in parallel.
fn encode(
    mods: &[&[f32]],
    dim: usize,
    data: &mut AnnData,
    basis: &mut [f32],
) -> Result<(), GramError> {
    let m = mods.len();
    basis
        .par_chunks_mut(m * dim)
        .zip(data.codes.par_chunks_mut(m * dim))
        .zip(data.code_scale.par_chunks_mut(m))
        .zip(data.code_err.par_chunks_mut(m))
        .zip(data.w.par_iter_mut())
        .enumerate()
        .try_for_each_init(
            || vec![0.0f64; m * dim],
            |u, (j, ((((b, q), s), e), w))| {
                let mut rows: [&[f32]; MAX_K] = [&[]; MAX_K];
                for (r, t) in rows.iter_mut().zip(mods) {
                    *r = &t[j * dim..(j + 1) * dim];
                }
                *w = span_basis(&rows[..m], u)?;
                for t in 0..m {
                    let ut = &u[t * dim..(t + 1) * dim];
                    for (o, &v) in b[t * dim..(t + 1) * dim].iter_mut().zip(ut) {
                        *o = v as f32;
                    }
                    (s[t], e[t]) = quantise(ut, &mut q[t * dim..(t + 1) * dim]);
                }
                Ok(())
            },
        )
}

/// int8 code of the unit vector `u`: q = round(u / s), s = max|u_i| / 127 (as f32). Returns s
/// and an upper bound on ‖u − s·q‖ (0 and 0 for a zero vector).
pub(super) fn quantise(u: &[f64], q: &mut [i8]) -> (f32, f32) {
    let amax = u.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    if amax == 0.0 {
        q.fill(0);
        return (0.0, 0.0);
    }
    let s = (amax / 127.0) as f32;
    let mut err2 = 0.0f64;
    for (o, &v) in q.iter_mut().zip(u) {
        let c = (v / s as f64).round().clamp(-127.0, 127.0);
        *o = c as i8;
        err2 += (v - s as f64 * c).powi(2);
    }
    // Rounded up past f32's rounding, so that it stays a bound.
    (s, (err2.sqrt() * (1.0 + 1e-6) + 1e-12) as f32)
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

/// The inverted lists: every cell's candidates (each basis vector listed in its cell), by
/// counting sort. Zero basis vectors (rank-deficient candidates) are listed nowhere.
fn lists(data: &mut AnnData, cell_of: &[u32], m: usize) {
    let cells = data.fine_gamma.len();
    let mut offsets = vec![0u32; cells + 1];
    for &c in cell_of.iter().filter(|&&c| c != u32::MAX) {
        offsets[c as usize + 1] += 1;
    }
    for i in 0..cells {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets.clone();
    let mut ids = vec![0u32; offsets[cells] as usize];
    for (e, &c) in cell_of.iter().enumerate().filter(|(_, c)| **c != u32::MAX) {
        ids[next[c as usize] as usize] = (e / m) as u32;
        next[c as usize] += 1;
    }
    data.list_offsets = offsets;
    data.list_ids = ids;
}
