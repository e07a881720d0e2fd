//! A candidate's modality vectors M = {m₁ … m_p} as an orthonormal basis of their span, for
//! indexes that score many anchors against one candidate through dot products with the basis:
//!
//! ```text
//! vol(a, m₁ … m_p)² = w · (‖a‖² − Σ_t (a·u_t)²),   w = vol(m₁ … m_p)²
//! ```
//!
//! (the tuple's volume is M's volume times the distance of a from span(M)). So an anchor
//! ranks a candidate high when some (a·u_t)² is large or w is small: what an approximate
//! search generates candidates from, and bounds unseen candidates with.

use crate::{Element, GramError};

/// Writes an orthonormal basis of span(`mods`) into `basis` (p rows of n, row-major, f64) by
/// modified Gram–Schmidt with one reorthogonalisation, and returns w = vol(mods)² = Π ‖r_t‖²
/// (r_t: m_t less its projection on the earlier vectors).
///
/// A vector within 16·n·ε of the span of the earlier ones (relative to its norm) makes M
/// rank-deficient: w = 0 (every tuple with this candidate has volume 0) and the rows from
/// it on are 0.
///
/// Accuracy: after the second pass the basis is orthonormal to a few ε·n (|u_s·u_t − δ_st|);
/// w is accurate to about n·ε·κ(M)² relative, κ the condition of M.
///
/// Errors: `EmptyInput` (p = 0 or n = 0), `TooManyVectors` (p ≥ MAX_K), `DimensionMismatch`
/// (ragged vectors or `basis.len()` ≠ p·n), `NonFinite`, `OutOfRange` (w overflows f64).
pub fn span_basis<T: Element>(mods: &[&[T]], basis: &mut [f64]) -> Result<f64, GramError> {
    let p = mods.len();
    if p == 0 || mods[0].is_empty() {
        return Err(GramError::EmptyInput);
    }
    if p >= crate::MAX_K {
        return Err(GramError::TooManyVectors { k: p + 1 });
    }
    let n = mods[0].len();
    for m in mods {
        if m.len() != n {
            return Err(GramError::DimensionMismatch {
                expected: n,
                found: m.len(),
            });
        }
    }
    if basis.len() != p * n {
        return Err(GramError::DimensionMismatch {
            expected: p * n,
            found: basis.len(),
        });
    }
    basis.fill(0.0);
    let tolerance = 16.0 * n as f64 * f64::EPSILON;
    let mut w = 1.0f64;
    for t in 0..p {
        let (done, rest) = basis.split_at_mut(t * n);
        let r = &mut rest[..n];
        for (ri, x) in r.iter_mut().zip(mods[t]) {
            *ri = x.to_f64();
        }
        if r.iter().any(|x| !x.is_finite()) {
            return Err(GramError::NonFinite);
        }
        let norm0 = norm(r);
        for _ in 0..2 {
            for u in done.chunks_exact(n) {
                let c: f64 = u.iter().zip(r.iter()).map(|(a, b)| a * b).sum();
                for (ri, ui) in r.iter_mut().zip(u) {
                    *ri -= c * ui;
                }
            }
        }
        let nr = norm(r);
        if !(nr > tolerance * norm0) {
            // Rank-deficient (or a zero vector): volume 0 for every anchor.
            basis.fill(0.0);
            return Ok(0.0);
        }
        for ri in r.iter_mut() {
            *ri /= nr;
        }
        w *= nr * nr;
    }
    if w.is_finite() {
        Ok(w)
    } else {
        Err(GramError::OutOfRange)
    }
}

/// ‖x‖₂, scaled so that no square overflows or underflows.
fn norm(x: &[f64]) -> f64 {
    let big = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if big == 0.0 || !big.is_finite() {
        return big;
    }
    big * libm::sqrt(x.iter().map(|v| (v / big) * (v / big)).sum::<f64>())
}

/// vol(a, M)² from M's basis and w ([`span_basis`]): w · max(0, ‖a‖² − Σ_t (a·u_t)²).
///
/// Accuracy: absolute error within about (p + 2)·n·ε·w·‖a‖² (the subtraction cancels when a
/// lies near span(M); an exact re-scoring is for the final ranking, this for generating and
/// bounding candidates). Errors: `DimensionMismatch` (`basis.len()` ≠ p·`a.len()`),
/// `NonFinite`, `OutOfRange` (‖a‖² or the result overflows f64).
pub fn volume_sq_by_basis<T: Element>(a: &[T], w: f64, basis: &[f64]) -> Result<f64, GramError> {
    let n = a.len();
    if n == 0 || !basis.len().is_multiple_of(n) {
        return Err(GramError::DimensionMismatch {
            expected: n,
            found: basis.len(),
        });
    }
    let mut a2 = 0.0;
    for x in a {
        let x = x.to_f64();
        if !x.is_finite() {
            return Err(GramError::NonFinite);
        }
        a2 += x * x;
    }
    let projected: f64 = basis
        .chunks_exact(n)
        .map(|u| {
            let c: f64 = u.iter().zip(a).map(|(ui, x)| ui * x.to_f64()).sum();
            c * c
        })
        .sum();
    let v = w * (a2 - projected).max(0.0);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(GramError::OutOfRange)
    }
}
