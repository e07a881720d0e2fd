//! The CPU backend: volume matrices at close to the speed of the cross-dot GEMMs.
//!
//! For each tile of anchors × candidates, one f32 GEMM per modality gives the cross dot
//! products a·m_t ([`gemm`]: the faster of two crates for this CPU, no threads of its own; rayon
//! parallelises over anchor tiles). Each pair's volume then comes from the candidate's
//! precomputed factor ([`gram_nostd::Candidate`]), with an a-posteriori error bound. Pairs whose
//! bound exceeds [`GEMM_PATH_TOLERANCE`] — anchors lying nearly in the candidate's span, i.e.
//! well-aligned positives — go to [`gram_nostd::score_pair`] (f64 dots, then the exact path).
//! Memory: the output plus, per thread, one tile of dot products per modality.

mod factors;
pub mod gemm;
pub mod topk;

use crate::simd::{self, Level};
pub use factors::Factors;
pub use gemm::{GemmKernel, sgemm_abt};
use gram_nostd::{GramError, MAX_K, dot::dot_f64, score_pair};
use rayon::prelude::*;

/// Anchor rows per tile (one rayon task) and candidate columns per GEMM: 256 rows amortise
/// the GEMM's packing of each candidate block (64 spent 17% of the time packing).
pub const TILE_ROWS: usize = 256;
pub const TILE_COLS: usize = 1024;

/// Pairs from the GEMM path whose error bound exceeds this are recomputed with f64 dots (and,
/// if still ill-conditioned, exactly). 4e-6 keeps the accuracy contract (1e-5) with margin.
pub const GEMM_PATH_TOLERANCE: f64 = 4e-6;

/// The f32 GEMM's error model holds when no product or partial sum leaves f32's normal range:
/// every |partial sum| ≤ ‖a‖‖m‖ ≤ 2^120 < f32::MAX, and underflowed products (each off by
/// < 2^-149) stay negligible next to ‖a‖‖m‖ ≥ 2^-100. Pairs outside take the f64 path (found
/// by the stress test with magnitudes from 1e-30 to 1e30).
const GEMM_SAFE_RANGE: (f64, f64) = (7.888_609_052_210_118e-31, 1.329_227_995_784_916e36); // 2^-100, 2^120

/// Error of an f32 GEMM dot product relative to ‖a‖‖m‖, by the probabilistic rounding model
/// of Higham & Mary (2019) with λ = 6 (exceeded with probability < 1e-7 per dot), plus the
/// final rounding to f32. The deterministic worst case, n·2^-24, is never approached by
/// rounding errors of random sign and would send every pair to the slow path.
pub fn gemm_dot_rel_err(n: usize) -> f64 {
    (6.0 * (n as f64).sqrt() + 2.0) * f32::EPSILON as f64 / 2.0
}

/// Element type of a volume matrix: f32 (refusing volumes beyond its range) or f64.
pub trait VolumeOut: Copy + Default + Send + Sync {
    /// `out[i] = vols[i]` converted; for f32, `OutOfRange` if any volume exceeds its range
    /// (checked after the whole slice is converted, so the loop vectorises).
    fn store(vols: &[f64], out: &mut [Self]) -> Result<(), GramError>;
}

impl VolumeOut for f32 {
    #[inline]
    fn store(vols: &[f64], out: &mut [f32]) -> Result<(), GramError> {
        let mut finite = true;
        for (o, &v) in out.iter_mut().zip(vols) {
            *o = v as f32;
            finite &= o.is_finite();
        }
        if finite {
            Ok(())
        } else {
            Err(GramError::OutOfRange)
        }
    }
}

impl VolumeOut for f64 {
    #[inline]
    fn store(vols: &[f64], out: &mut [f64]) -> Result<(), GramError> {
        out.copy_from_slice(vols);
        Ok(())
    }
}

/// Counts of what the backend did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub pairs: usize,
    /// Pairs recomputed with f64 dot products because the GEMM bound was too loose.
    pub f64_recomputes: usize,
    /// Of those, pairs that needed the exact path.
    pub exact_recomputes: usize,
}

impl std::ops::Add for CpuStats {
    type Output = CpuStats;
    fn add(self, o: CpuStats) -> CpuStats {
        CpuStats {
            pairs: self.pairs + o.pairs,
            f64_recomputes: self.f64_recomputes + o.f64_recomputes,
            exact_recomputes: self.exact_recomputes + o.exact_recomputes,
        }
    }
}

/// Candidates (row j of every modality) factored once, ready to score any number of anchors.
pub struct Scorer<'a> {
    modalities: Vec<&'a [f32]>,
    factors: Factors<'a>,
    n2: usize,
    dim: usize,
}

/// Candidate columns per top-k task: with few anchors (one tile) the candidates are what
/// spreads the work over the threads.
const TOP_K_COLS: usize = 16 * TILE_COLS;

impl<'a> Scorer<'a> {
    /// `modalities[t]` is a row-major [n2, dim] matrix; 1..=15 modalities.
    pub fn new(modalities: &[&'a [f32]], n2: usize, dim: usize) -> Result<Scorer<'a>, GramError> {
        Self::check_modalities(modalities, n2, dim)?;
        let factors = Factors::compute(modalities, n2, dim)?;
        Self::with_factors(modalities, factors)
    }

    /// A scorer over factors computed earlier (a search index) for the same `modalities`.
    pub fn with_factors(
        modalities: &[&'a [f32]],
        factors: Factors<'a>,
    ) -> Result<Scorer<'a>, GramError> {
        let (n2, dim) = (factors.len(), factors.dim());
        Self::check_modalities(modalities, n2, dim)?;
        if factors.vectors() != modalities.len() {
            return Err(GramError::DimensionMismatch {
                expected: modalities.len(),
                found: factors.vectors(),
            });
        }
        Ok(Scorer {
            modalities: modalities.to_vec(),
            factors,
            n2,
            dim,
        })
    }

    fn check_modalities(modalities: &[&[f32]], n2: usize, dim: usize) -> Result<(), GramError> {
        if modalities.is_empty() || n2 == 0 || dim == 0 {
            return Err(GramError::EmptyInput);
        }
        if modalities.len() >= MAX_K {
            return Err(GramError::TooManyVectors {
                k: modalities.len() + 1,
            });
        }
        if let Some(m) = modalities.iter().find(|m| m.len() != n2 * dim) {
            return Err(GramError::DimensionMismatch {
                expected: n2 * dim,
                found: m.len(),
            });
        }
        Ok(())
    }

    pub fn candidates(&self) -> usize {
        self.n2
    }

    /// The candidates' factors (what a search index stores).
    pub fn factors(&self) -> &Factors<'a> {
        &self.factors
    }

    /// `out[i·n2 + j] = vol(anchor_i, candidate_j)` for a row-major [n1, dim] `anchor`.
    pub fn volume_matrix<O: VolumeOut>(
        &self,
        anchor: &[f32],
        out: &mut [O],
    ) -> Result<CpuStats, GramError> {
        let n1 = self.check_anchor(anchor)?;
        if out.len() != n1 * self.n2 {
            return Err(GramError::DimensionMismatch {
                expected: n1 * self.n2,
                found: out.len(),
            });
        }
        out.par_chunks_mut(TILE_ROWS * self.n2)
            .zip(anchor.par_chunks(TILE_ROWS * self.dim))
            .map(|(block, rows)| self.score_block(rows, block))
            .try_reduce(CpuStats::default, |a, b| Ok(a + b))
    }

    /// The volume matrix of [`Scorer::volume_matrix`], one tile of [`TILE_ROWS`] anchor rows at
    /// a time: `sink(first_row, block)` gets each tile's rows (row-major [rows, n2]) on rayon's
    /// threads, in no particular order, as soon as it is computed — so the whole matrix is
    /// never held (one block per thread is). Stops at the first error, the scorer's or the
    /// sink's; the blocks handed over before it are the sink's to discard.
    pub fn volume_blocks<O, E, F>(&self, anchor: &[f32], sink: F) -> Result<CpuStats, E>
    where
        O: VolumeOut,
        E: From<GramError> + Send,
        F: Fn(usize, &[O]) -> Result<(), E> + Sync,
    {
        self.check_anchor(anchor)?;
        anchor
            .par_chunks(TILE_ROWS * self.dim)
            .enumerate()
            .map_init(Vec::new, |block, (t, rows)| {
                block.clear();
                block.resize(rows.len() / self.dim * self.n2, O::default());
                let stats = self.score_block(rows, block)?;
                sink(t * TILE_ROWS, block)?;
                Ok(stats)
            })
            .try_reduce(CpuStats::default, |a, b| Ok(a + b))
    }

    /// Row j of every modality, after `anchor`: the k vectors of pair (anchor, candidate j).
    pub fn pair_rows<'s>(
        &'s self,
        anchor: &'s [f32],
        j: usize,
        rows: &mut [&'s [f32]; MAX_K],
    ) -> usize {
        let d = self.dim;
        rows[0] = anchor;
        for (t, modality) in self.modalities.iter().enumerate() {
            rows[t + 1] = &modality[j * d..(j + 1) * d];
        }
        self.modalities.len() + 1
    }

    /// vol(anchor, candidate j) on the accurate path (f64 dots, exact fallback), as f64.
    pub fn pair_volume_accurate(&self, anchor: &[f32], j: usize) -> Result<f64, GramError> {
        let mut rows: [&[f32]; MAX_K] = [&[]; MAX_K];
        let k = self.pair_rows(anchor, j, &mut rows);
        let cand = self.factors.candidate(j)?;
        score_pair(&rows[..k], dot_f64(anchor, 1.0, anchor, 1.0), &cand).map(|(v, _)| v)
    }

    /// Score anchor tiles in parallel, handing each finished tile (first row index, its
    /// [rows, n2] volumes) to `fold`, and combine the per-thread accumulators with `reduce`.
    /// Peak memory: one tile per thread, never the whole matrix.
    pub fn fold_tiles<A, F, R>(
        &self,
        anchor: &[f32],
        init: impl Fn() -> A + Sync + Send,
        fold: F,
        reduce: R,
    ) -> Result<(A, CpuStats), GramError>
    where
        A: Send,
        F: Fn(A, usize, &mut [f32]) -> A + Sync + Send,
        R: Fn(A, A) -> A + Sync + Send,
    {
        self.check_anchor(anchor)?;
        anchor
            .par_chunks(TILE_ROWS * self.dim)
            .enumerate()
            .try_fold(
                || (init(), CpuStats::default(), Vec::new()),
                |(acc, stats, mut buf), (t, rows)| {
                    buf.resize(rows.len() / self.dim * self.n2, 0.0f32);
                    let s = self.score_block(rows, &mut buf)?;
                    let acc = fold(acc, t * TILE_ROWS, &mut buf);
                    Ok((acc, stats + s, buf))
                },
            )
            .map(|r| r.map(|(a, s, _)| (a, s)))
            .try_reduce(
                || (init(), CpuStats::default()),
                |(a, sa), (b, sb)| Ok((reduce(a, b), sa + sb)),
            )
    }

    /// For every anchor row, the `k` smallest-volume candidates as [`topk::key`]s (ascending:
    /// volume by `total_cmp`, then index, the index offset by `first`). Volumes stream
    /// through a bounded list per row: memory is O(threads · tile + N1 · k), whatever N2.
    pub fn top_k_keys(
        &self,
        anchor: &[f32],
        k: usize,
        first: u32,
    ) -> Result<(Vec<Vec<u64>>, CpuStats), GramError> {
        let n1 = self.check_anchor(anchor)?;
        if k == 0 {
            return Err(GramError::EmptyInput);
        }
        if first as usize + self.n2 > u32::MAX as usize + 1 {
            return Err(GramError::OutOfRange);
        }
        let tiles = n1.div_ceil(TILE_ROWS);
        let ranges = self.n2.div_ceil(TOP_K_COLS);
        let parts = (0..tiles * ranges)
            .into_par_iter()
            .map(|task| {
                let (t, c) = (task / ranges, task % ranges);
                let rows = &anchor[t * TILE_ROWS * self.dim..]
                    [..(n1 - t * TILE_ROWS).min(TILE_ROWS) * self.dim];
                let cols = c * TOP_K_COLS..((c + 1) * TOP_K_COLS).min(self.n2);
                self.top_k_block(rows, cols, k, first)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut stats = CpuStats::default();
        let mut out = Vec::with_capacity(n1);
        for (t, tile) in parts.chunks(ranges).enumerate() {
            for i in 0..(n1 - t * TILE_ROWS).min(TILE_ROWS) {
                out.push(topk::merge(
                    tile.iter().map(|(lists, _)| lists[i].iter().copied()),
                    k,
                ));
            }
            stats = tile.iter().fold(stats, |s, (_, b)| s + *b);
        }
        Ok((out, stats))
    }

    /// One top-k task: anchor `rows` against the candidates `cols`.
    fn top_k_block(
        &self,
        rows: &[f32],
        cols: std::ops::Range<usize>,
        k: usize,
        first: u32,
    ) -> Result<(Vec<Vec<u64>>, CpuStats), GramError> {
        let mut work = TileWork::new(rows, self.dim, self.modalities.len());
        let r = work.rows;
        let mut best: Vec<topk::Best> = (0..r).map(|_| topk::Best::new(k)).collect();
        // The volume a candidate must not exceed to enter row i's list (ties go on to the
        // exact key comparison).
        let mut bars = vec![f32::INFINITY; r];
        let mut tile = vec![0.0f32; r * TILE_COLS];
        let mut stats = CpuStats::default();
        for c0 in cols.clone().step_by(TILE_COLS) {
            let n = TILE_COLS.min(cols.end - c0);
            stats = stats + self.score_columns(rows, &mut work, c0, n, &mut tile)?;
            for jj in 0..n {
                let j = first + (c0 + jj) as u32;
                let vols = &tile[jj * r..(jj + 1) * r];
                // Most candidates make no row's list: find that out in one vector pass.
                let hit = vols
                    .iter()
                    .zip(&bars)
                    .fold(false, |acc, (v, b)| acc | (v <= b));
                if hit {
                    for i in 0..r {
                        if vols[i] <= bars[i] {
                            best[i].push(topk::key(j, vols[i]));
                            bars[i] = best[i].bar_volume();
                        }
                    }
                }
            }
        }
        Ok((
            best.into_iter().map(topk::Best::into_sorted).collect(),
            stats,
        ))
    }

    fn check_anchor(&self, anchor: &[f32]) -> Result<usize, GramError> {
        if anchor.is_empty() {
            return Err(GramError::EmptyInput);
        }
        if !anchor.len().is_multiple_of(self.dim) {
            return Err(GramError::DimensionMismatch {
                expected: self.dim,
                found: anchor.len() % self.dim,
            });
        }
        Ok(anchor.len() / self.dim)
    }

    /// One tile of the volume matrix: `rows` is [r, dim], `block` is [r, n2], row-major.
    fn score_block<O: VolumeOut>(
        &self,
        rows: &[f32],
        block: &mut [O],
    ) -> Result<CpuStats, GramError> {
        let n2 = self.n2;
        let mut work = TileWork::new(rows, self.dim, self.modalities.len());
        let r = work.rows;
        // Volumes of the current column block, candidate-major; copied into the row-major
        // output afterwards (writing the output directly would stride by n2).
        let mut tile = vec![O::default(); r * TILE_COLS];
        let mut stats = CpuStats::default();
        for c0 in (0..n2).step_by(TILE_COLS) {
            let cols = TILE_COLS.min(n2 - c0);
            stats = stats + self.score_columns(rows, &mut work, c0, cols, &mut tile)?;
            transpose_into(&tile[..r * cols], r, block, n2, c0);
        }
        Ok(stats)
    }

    /// Volumes of the anchor `rows` against candidates `c0..c0 + cols` (≤ [`TILE_COLS`]),
    /// candidate-major: `tile[jj·r + i] = vol(row i, candidate c0 + jj)`.
    ///
    /// The per-pair arithmetic runs compiled for the tile's SIMD level ([`crate::simd`]:
    /// AVX-512 where the CPU has it — 15 % faster than AVX2 for `gram score` at N = 4096 on an
    /// Intel Xeon — unless `GRAM_SIMD` says otherwise); the GEMM dispatches on its own. Every
    /// level gives the same bits (no fused multiply-adds are formed outside the GEMM; tested).
    fn score_columns<O: VolumeOut>(
        &self,
        rows: &[f32],
        work: &mut TileWork,
        c0: usize,
        cols: usize,
        tile: &mut [O],
    ) -> Result<CpuStats, GramError> {
        simd::vectorised_at(work.level, || {
            self.score_columns_any(rows, work, c0, cols, tile)
        })
    }

    #[inline(always)]
    fn score_columns_any<O: VolumeOut>(
        &self,
        rows: &[f32],
        work: &mut TileWork,
        c0: usize,
        cols: usize,
        tile: &mut [O],
    ) -> Result<CpuStats, GramError> {
        let (d, m, r) = (self.dim, self.modalities.len(), work.rows);
        let mut stats = CpuStats {
            pairs: r * cols,
            ..CpuStats::default()
        };
        let mut pair_rows: [&[f32]; MAX_K] = [&[]; MAX_K];
        for (t, modality) in self.modalities.iter().enumerate() {
            let c = &mut work.dots[t * r * cols..(t + 1) * r * cols];
            sgemm_abt(&modality[c0 * d..(c0 + cols) * d], rows, d, c);
        }
        for jj in 0..cols {
            let j = c0 + jj;
            let cand = self.factors.candidate(j)?;
            let cand_dots: [&[f32]; MAX_K] = std::array::from_fn(|t| {
                if t < m {
                    &work.dots[t * r * cols + jj * r..][..r]
                } else {
                    &[]
                }
            });
            cand.pair_volumes_within(
                (&work.norms, &work.a_norms),
                &cand_dots[..m],
                (work.eta, work.eta_norm),
                GEMM_PATH_TOLERANCE,
                &mut work.scratch,
                &mut work.vols,
            );
            // Pairs outside the GEMM's safe range, or whose bound failed (NaN), are redone on
            // the accurate path; found branch-free first so the common case is a vector pass.
            let (lo, hi) = self.factors.norm_range(j);
            let mut redo = false;
            for (v, &a) in work.vols.iter_mut().zip(&work.a_norms) {
                let in_range = (a * lo >= GEMM_SAFE_RANGE.0) & (a * hi <= GEMM_SAFE_RANGE.1);
                *v = if in_range { *v } else { f64::NAN };
                redo |= v.is_nan();
            }
            if redo {
                for i in 0..r {
                    if work.vols[i].is_nan() {
                        let k = self.pair_rows(&rows[i * d..(i + 1) * d], j, &mut pair_rows);
                        let (v, exact) = score_pair(&pair_rows[..k], work.norms[i], &cand)?;
                        stats.f64_recomputes += 1;
                        stats.exact_recomputes += exact as usize;
                        work.vols[i] = v;
                    }
                }
            }
            O::store(&work.vols, &mut tile[jj * r..(jj + 1) * r])?;
        }
        Ok(stats)
    }
}

/// `block[i·n2 + c0 + jj] = tile[jj·r + i]`: a candidate-major tile [cols, r] into its columns
/// of the row-major output. By groups of 16 anchors, so each candidate's read is one cache line
/// and the writes go to 16 rows at a time (a row at a time read the tile with a stride of r).
fn transpose_into<O: Copy>(tile: &[O], r: usize, block: &mut [O], n2: usize, c0: usize) {
    const GROUP: usize = 16;
    for i0 in (0..r).step_by(GROUP) {
        let g = GROUP.min(r - i0);
        for (jj, src) in tile.chunks_exact(r).enumerate() {
            for (t, &v) in src[i0..i0 + g].iter().enumerate() {
                block[(i0 + t) * n2 + c0 + jj] = v;
            }
        }
    }
}

/// What one anchor tile needs while its column blocks are scored: the anchors' norms and
/// buffers reused from block to block.
struct TileWork {
    rows: usize,
    /// The SIMD level of the per-pair step.
    level: Level,
    norms: Vec<f64>,
    a_norms: Vec<f64>,
    eta: f64,
    eta_norm: f64,
    /// dots[t] is [cols, r]: candidate-major, so the inner loop over anchors reads one
    /// candidate's factor once and its dot products contiguously.
    dots: Vec<f32>,
    scratch: Vec<f64>,
    vols: Vec<f64>,
}

impl TileWork {
    fn new(rows: &[f32], d: usize, m: usize) -> TileWork {
        let norms: Vec<f64> = rows
            .chunks_exact(d)
            .map(|a| dot_f64(a, 1.0, a, 1.0))
            .collect();
        let r = norms.len();
        TileWork {
            rows: r,
            level: simd::level_or(Level::Avx512),
            a_norms: norms.iter().map(|x| x.sqrt()).collect(),
            norms,
            eta: gemm_dot_rel_err(d),
            eta_norm: gram_nostd::dot_f64_rel_err(d),
            dots: vec![0.0f32; m * r * TILE_COLS],
            scratch: vec![0.0f64; (m + 2) * r],
            vols: vec![0.0f64; r],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gram_nostd::volume;

    fn pseudo_random(len: usize, seed: u64) -> Vec<f32> {
        gram_nostd::uniform::Uniform::new(seed)
            .take(len)
            .map(|x| x as f32)
            .collect()
    }

    #[test]
    fn matches_gram_nostd_on_ragged_tiles() {
        // Shapes that leave partial tiles in both directions.
        let (n1, n2, d) = (TILE_ROWS + 3, TILE_COLS + 5, 7);
        let a = pseudo_random(n1 * d, 1);
        let m0 = pseudo_random(n2 * d, 2);
        let m1 = pseudo_random(n2 * d, 3);
        let scorer = Scorer::new(&[&m0, &m1], n2, d).unwrap();
        let mut out = vec![0.0f32; n1 * n2];
        let stats = scorer.volume_matrix(&a, &mut out).unwrap();
        assert_eq!(stats.pairs, n1 * n2);
        assert!(out.iter().all(|&v| v > 0.0), "degenerate test data");
        for i in (0..n1).step_by(5) {
            for j in (0..n2).step_by(7) {
                let exact = volume(&[
                    &a[i * d..(i + 1) * d],
                    &m0[j * d..(j + 1) * d],
                    &m1[j * d..(j + 1) * d],
                ])
                .unwrap();
                let got = out[i * n2 + j] as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * exact,
                    "({i},{j}) {got} vs {exact}"
                );
            }
        }
    }

    /// The per-pair step gives the same bits at every SIMD level the CPU has, and the blocks
    /// `volume_blocks` hands over are the rows of `volume_matrix`.
    #[test]
    fn every_simd_level_and_the_block_stream_give_the_same_bits() {
        let (n1, n2, d) = (TILE_ROWS + 9, 300, 33);
        let a = pseudo_random(n1 * d, 4);
        let m0 = pseudo_random(n2 * d, 5);
        let m1 = pseudo_random(n2 * d, 6);
        let scorer = Scorer::new(&[&m0, &m1], n2, d).unwrap();
        let rows = &a[..TILE_ROWS * d];
        let mut tiles = vec![];
        for level in [Level::Baseline, Level::Avx2, Level::Avx512] {
            if level > Level::detect() {
                continue;
            }
            let mut work = TileWork::new(rows, d, 2);
            work.level = level;
            let mut tile = vec![0.0f32; TILE_ROWS * TILE_COLS];
            scorer
                .score_columns(rows, &mut work, 0, n2, &mut tile)
                .unwrap();
            tiles.push((level, tile));
        }
        for (level, t) in &tiles[1..] {
            let same = t
                .iter()
                .zip(&tiles[0].1)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{level:?} differs from {:?}", tiles[0].0);
        }

        let mut full = vec![0.0f32; n1 * n2];
        scorer.volume_matrix(&a, &mut full).unwrap();
        let streamed = std::sync::Mutex::new(vec![f32::NAN; n1 * n2]);
        let stats = scorer
            .volume_blocks(&a, |row, block: &[f32]| {
                streamed.lock().unwrap()[row * n2..][..block.len()].copy_from_slice(block);
                Ok::<_, GramError>(())
            })
            .unwrap();
        assert_eq!(stats.pairs, n1 * n2);
        let streamed = streamed.into_inner().unwrap();
        assert!(
            full.iter()
                .zip(&streamed)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
    }

    #[test]
    fn fold_tiles_sees_every_row_once() {
        let (n1, n2, d) = (3 * TILE_ROWS + 1, 9, 4);
        let a = pseudo_random(n1 * d, 4);
        let m0 = pseudo_random(n2 * d, 5);
        let scorer = Scorer::new(&[&m0], n2, d).unwrap();
        let mut full = vec![0.0f32; n1 * n2];
        scorer.volume_matrix(&a, &mut full).unwrap();
        let (sum, stats) = scorer
            .fold_tiles(
                &a,
                || 0.0f64,
                |acc, _, tile| acc + tile.iter().map(|&v| v as f64).sum::<f64>(),
                |x, y| x + y,
            )
            .unwrap();
        let want: f64 = full.iter().map(|&v| v as f64).sum();
        assert!((sum - want).abs() <= 1e-9 * want);
        assert_eq!(stats.pairs, n1 * n2);
    }
}
