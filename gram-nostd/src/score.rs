//! One anchor against many candidates: the kernel the CPU and GPU backends parallelise.

use crate::candidate::Candidate;
use crate::dot::dot_f64;
use crate::element::max_abs_checked;
use crate::single::{
    Arithmetic, IN_RANGE, U32, dot2_32, dot2_rel_err, dot32, dot32_rel_err, max_abs32, sqrt32,
};
use crate::volume::volume;
use crate::{Element, GramError, MAX_K};

/// Pairs whose fast-path error bound exceeds this are recomputed on the exact path. Well below
/// f32 rounding (6e-8), so the f32 output is as good as the exact path's.
pub const FAST_PATH_TOLERANCE: f64 = 1e-8;

/// The accuracy contract of [`Arithmetic::Single`]: every output within this relative error of
/// the exact volume (f32 rounding included) wherever its bound can certify it — in practice
/// wherever the normalised volume is ≥ 1e-4 — and otherwise recomputed exactly. The same
/// contract as gram-gpu's f32 kernel.
pub const SINGLE_PATH_TOLERANCE: f64 = 1e-6;

/// What [`score_row`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScoreStats {
    /// Pairs recomputed on the exact path because the fast path's error bound was too large.
    pub exact_recomputes: usize,
    /// [`Arithmetic::Single`] only: pairs whose f32 bound failed and that were settled by
    /// more accurate dot products (compensated f32, or f64) without the exact path.
    pub refined: usize,
}

/// Error bound of [`dot_f64`] relative to ‖a‖‖b‖ for vectors of length n.
#[inline]
pub fn dot_f64_rel_err(n: usize) -> f64 {
    (n as f64 / 8.0 + 4.0) * f64::EPSILON / 2.0
}

/// Fill `out[j] = vol(anchor, modalities[0][j], …, modalities[k−2][j])` for every candidate j,
/// in the target's [`Arithmetic::NATIVE`] arithmetic (see [`score_row_with`]).
pub fn score_row<T: Element>(
    anchor: &[T],
    modalities: &[&[T]],
    candidates: &[Candidate],
    out: &mut [f32],
) -> Result<ScoreStats, GramError> {
    score_row_with(Arithmetic::NATIVE, anchor, modalities, candidates, out)
}

/// Fill `out[j] = vol(anchor, modalities[0][j], …, modalities[k−2][j])` for every candidate j.
///
/// `modalities[t]` is a row-major `[N2, n]` matrix (row j belongs to candidate j) and
/// `candidates[j]` must be `Candidate::new` of row j of each modality.
/// - [`Arithmetic::Double`]: dot products in f64; pairs whose a-posteriori bound exceeds
///   [`FAST_PATH_TOLERANCE`] are recomputed with [`volume`], so every output has the accuracy
///   of the exact path rounded to f32.
/// - [`Arithmetic::Single`] (f32 inputs; f64 inputs take `Double`): dot products in f32
///   ([`crate::single::dot32`]) and the candidate's f32 factor; a pair whose certified bound
///   exceeds [`SINGLE_PATH_TOLERANCE`] is redone with compensated f32 dot products, then on the
///   `Double` path. Every output is within 1e-6 relative of the exact volume, exactly 0 for a
///   zero anchor, a duplicated or zero candidate vector, never NaN. Anchors or candidate
///   vectors whose largest magnitude is outside [`crate::single::IN_RANGE`] take `Double`.
///
/// Errors: `EmptyInput` (no candidates or n = 0), `DimensionMismatch`, `TooManyVectors`,
/// `NonFinite` (anchor), `OutOfRange` (a volume above `f32::MAX`). On error `out` may be
/// partly written.
pub fn score_row_with<T: Element>(
    arithmetic: Arithmetic,
    anchor: &[T],
    modalities: &[&[T]],
    candidates: &[Candidate],
    out: &mut [f32],
) -> Result<ScoreStats, GramError> {
    if out.len() != candidates.len() {
        return Err(GramError::DimensionMismatch {
            expected: candidates.len(),
            found: out.len(),
        });
    }
    score_row_by(arithmetic, anchor, modalities, |j| &candidates[j], out)
}

/// [`score_row_with`] for candidates that are not one slice: `candidate(j)` for j in
/// `0..out.len()` (the C API keeps each candidate in tagged storage of its own). Same
/// contracts and errors.
pub fn score_row_by<'c, T: Element>(
    arithmetic: Arithmetic,
    anchor: &[T],
    modalities: &[&[T]],
    candidate: impl Fn(usize) -> &'c Candidate,
    out: &mut [f32],
) -> Result<ScoreStats, GramError> {
    let n = anchor.len();
    let n2 = out.len();
    if n == 0 || n2 == 0 {
        return Err(GramError::EmptyInput);
    }
    let m = modalities.len();
    if m + 1 > MAX_K {
        return Err(GramError::TooManyVectors { k: m + 1 });
    }
    for t in modalities {
        if t.len() != n2 * n {
            return Err(GramError::DimensionMismatch {
                expected: n2 * n,
                found: t.len(),
            });
        }
    }
    if let Some(c) = (0..n2)
        .map(&candidate)
        .find(|c| c.len() != m || c.dim() != n)
    {
        return Err(GramError::DimensionMismatch {
            expected: m,
            found: c.len(),
        });
    }
    if arithmetic == Arithmetic::Single
        && let Some(a32) = T::as_f32_slice(anchor)
    {
        let mut mods: [&[f32]; MAX_K] = [&[]; MAX_K];
        for (d, t) in mods.iter_mut().zip(modalities) {
            *d = T::as_f32_slice(t).unwrap_or_default();
        }
        return score_row_single(a32, &mods[..m], candidate, out);
    }
    max_abs_checked(anchor)?;
    let norm_sq = dot_f64(anchor, 1.0, anchor, 1.0);
    let mut stats = ScoreStats::default();
    let mut rows: [&[T]; MAX_K] = [anchor; MAX_K];
    for (j, o) in out.iter_mut().enumerate() {
        for (t, modality) in modalities.iter().enumerate() {
            rows[t + 1] = &modality[j * n..(j + 1) * n];
        }
        let (v, exact) = score_pair(&rows[..m + 1], norm_sq, candidate(j))?;
        stats.exact_recomputes += exact as usize;
        *o = to_f32(v)?;
    }
    Ok(stats)
}

/// Tolerance of the f32 fast path: the contract itself, the output's rounding being part of
/// [`Candidate::pair_volume32`]'s bound.
const SINGLE_TOL32: f32 = SINGLE_PATH_TOLERANCE as f32;

/// [`score_row_with`]'s `Single` path, shapes already checked: per pair the f32 fast path, then
/// compensated f32 dot products, then [`score_pair`] (f64 dots, then [`volume`]).
fn score_row_single<'c>(
    anchor: &[f32],
    modalities: &[&[f32]],
    candidate: impl Fn(usize) -> &'c Candidate,
    out: &mut [f32],
) -> Result<ScoreStats, GramError> {
    let (n, m) = (anchor.len(), modalities.len());
    let mut stats = ScoreStats::default();
    let max = max_abs32(anchor)?;
    if max == 0.0 {
        out.fill(0.0); // a zero anchor spans nothing: every volume is exactly 0
        return Ok(stats);
    }
    let in_range = IN_RANGE.contains(&max);
    // ‖a‖² compensated, once per row: within 2^-24 once rounded to f32, ~1e-10 in f64.
    let nsq64 = if in_range {
        dot2_32(anchor, anchor)
    } else {
        0.0
    };
    let nsq = nsq64 as f32;
    let norm = sqrt32(nsq) * (1.0 + 4.0 * U32); // an upper bound on ‖a‖
    let norm64 = libm::sqrt(nsq64);
    let (eta32, eta2) = (dot32_rel_err(n), dot2_rel_err(n));
    let mut exact_norm_sq = None;
    let mut rows: [&[f32]; MAX_K] = [anchor; MAX_K];
    for (j, o) in out.iter_mut().enumerate() {
        let c = candidate(j);
        for (t, modality) in modalities.iter().enumerate() {
            rows[t + 1] = &modality[j * n..(j + 1) * n];
        }
        if in_range && c.in_single_range() {
            let mut d32 = [0.0f32; MAX_K];
            for (d, row) in d32.iter_mut().zip(&rows[1..=m]) {
                *d = dot32(anchor, row);
            }
            if let Some(v) = c.pair_volume32(nsq, norm, &d32[..m], eta32, SINGLE_TOL32) {
                *o = v;
                continue;
            }
            let mut d64 = [0.0f64; MAX_K];
            for (d, row) in d64.iter_mut().zip(&rows[1..=m]) {
                *d = dot2_32(anchor, row);
            }
            let tol = SINGLE_PATH_TOLERANCE - U32 as f64; // room for the rounding to f32
            if let Some(v) = c.pair_volume_within(nsq64, norm64, &d64[..m], (eta2, eta2), tol) {
                *o = to_f32(v)?;
                stats.refined += 1;
                continue;
            }
        }
        let nsq_f64 = *exact_norm_sq.get_or_insert_with(|| dot_f64(anchor, 1.0, anchor, 1.0));
        let (v, exact) = score_pair(&rows[..=m], nsq_f64, c)?;
        stats.exact_recomputes += exact as usize;
        stats.refined += !exact as usize;
        *o = to_f32(v)?;
    }
    Ok(stats)
}

/// vol(`rows[0]`, `rows[1..]`) where `candidate` is the factor of `rows[1..]` and
/// `anchor_norm_sq = dot_f64(rows[0], rows[0])`: f64 dot products and the candidate's fast
/// path, or [`volume`] when its bound exceeds [`FAST_PATH_TOLERANCE`]. Returns the volume and
/// whether the exact path was taken. Shapes are the caller's responsibility (checked by
/// [`score_row`]); the anchor must be finite.
#[inline]
pub fn score_pair<T: Element>(
    rows: &[&[T]],
    anchor_norm_sq: f64,
    candidate: &Candidate,
) -> Result<(f64, bool), GramError> {
    let anchor = rows[0];
    let eta = dot_f64_rel_err(anchor.len());
    let mut dots = [0.0f64; MAX_K];
    for (d, row) in dots.iter_mut().zip(&rows[1..]) {
        *d = dot_f64(anchor, 1.0, row, 1.0);
    }
    let norm = libm::sqrt(anchor_norm_sq);
    match candidate.pair_volume_within(
        anchor_norm_sq,
        norm,
        &dots[..rows.len() - 1],
        (eta, eta),
        FAST_PATH_TOLERANCE,
    ) {
        Some(v) => Ok((v, false)),
        None => Ok((volume(rows)?, true)),
    }
}

/// Round a volume to f32, refusing values beyond f32's range instead of returning `inf`.
#[inline]
pub fn to_f32(v: f64) -> Result<f32, GramError> {
    let f = v as f32;
    if f.is_finite() {
        Ok(f)
    } else {
        Err(GramError::OutOfRange)
    }
}

/// Factor candidate j of `modalities` (row j of each `[N2, n]` matrix) for [`score_row`].
pub fn candidate_at<T: Element>(
    modalities: &[&[T]],
    n: usize,
    j: usize,
) -> Result<Candidate, GramError> {
    let mut rows: [&[T]; MAX_K] = [&[]; MAX_K];
    if modalities.len() >= MAX_K {
        return Err(GramError::TooManyVectors {
            k: modalities.len() + 1,
        });
    }
    for (t, modality) in modalities.iter().enumerate() {
        rows[t] = modality
            .get(j * n..(j + 1) * n)
            .ok_or(GramError::DimensionMismatch {
                expected: (j + 1) * n,
                found: modality.len(),
            })?;
    }
    Candidate::new(&rows[..modalities.len()], n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_matches_volume_and_recomputes_the_collinear_pair() {
        let n = 4;
        let anchor = [1.0f32, 0.0, 0.0, 0.0];
        // Candidate 0 is nearly collinear with the anchor, candidate 1 is not.
        let m0 = [1.0f32, 1e-5, 0.0, 0.0, /**/ 0.0, 1.0, 0.0, 0.0];
        let m1 = [1.0f32, 0.0, 1e-5, 0.0, /**/ 0.0, 0.0, 1.0, 1.0];
        let mods = [&m0[..], &m1[..]];
        let cands = [
            candidate_at(&mods, n, 0).unwrap(),
            candidate_at(&mods, n, 1).unwrap(),
        ];
        let mut out = [0.0f32; 2];
        let stats = score_row(&anchor, &mods, &cands, &mut out).unwrap();
        assert_eq!(stats.exact_recomputes, 1);
        let v0 = volume(&[&anchor[..], &m0[..4], &m1[..4]]).unwrap();
        let v1 = volume(&[&anchor[..], &m0[4..], &m1[4..]]).unwrap();
        assert_eq!(out[0], v0 as f32);
        assert!(((out[1] as f64) - v1).abs() <= 1e-7 * v1);
    }

    #[test]
    fn shape_errors() {
        let mut out = [0.0f32; 1];
        let m0 = [1.0f32, 0.0];
        let c = [candidate_at(&[&m0[..]], 2, 0).unwrap()];
        assert_eq!(
            score_row(&[1.0f32, 0.0, 0.0], &[&m0[..]], &c, &mut out),
            Err(GramError::DimensionMismatch {
                expected: 3,
                found: 2
            })
        );
        assert_eq!(
            score_row(&[f32::INFINITY, 0.0], &[&m0[..]], &c, &mut out),
            Err(GramError::NonFinite)
        );
        assert!(candidate_at(&[&m0[..]], 2, 1).is_err());
    }
}
