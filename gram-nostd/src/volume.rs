//! Volume of k vectors from the vectors themselves: the accurate path every other path is
//! checked against.
//!
//! Method: each vector is scaled by a power of two (exact) so its largest element lies in
//! [1, 2); the Gram matrix of the scaled vectors is formed with double-double dot products and
//! factored by a diagonally pivoted LDLᵀ in double-double; vol = 2^Σe · sqrt(Π pivots).
//! Forming the Gram matrix squares the condition number, but carrying ~106 bits pays for that:
//! the Schur pivot of a vector at normalised distance s from the span of the others loses
//! about `n²·2^-106 / s²` of its relative accuracy, which is 1e-11 at s = 1e-8 for n = 512.
//! The same arithmetic needs no scratch space, so it runs in `no_std` with no heap.

use crate::dd::Dd;
use crate::dot::dot_dd;
use crate::element::{Element, max_abs_checked, pow2_scale};
use crate::ldl::{Scaled, Square, ldl_pivoted, sqrt_det};
use crate::{GramError, MAX_K};

/// What [`scaled_gram`] learned besides the matrix itself.
pub(crate) struct GramInfo {
    pub k: usize,
    /// Vector i was multiplied by `2^-exps[i]`.
    pub exps: [i32; MAX_K],
    /// Some vector is exactly zero, or k > n: the volume is exactly zero.
    pub trivially_zero: bool,
}

/// Validate `vectors` (1..=MAX_K vectors, equal nonzero length, finite) and return `(k, n)`.
pub(crate) fn check_vectors<T: Element>(vectors: &[&[T]]) -> Result<(usize, usize), GramError> {
    let k = vectors.len();
    if k == 0 {
        return Err(GramError::EmptyInput);
    }
    if k > MAX_K {
        return Err(GramError::TooManyVectors { k });
    }
    let n = vectors[0].len();
    if n == 0 {
        return Err(GramError::EmptyInput);
    }
    for v in vectors {
        if v.len() != n {
            return Err(GramError::DimensionMismatch {
                expected: n,
                found: v.len(),
            });
        }
    }
    Ok((k, n))
}

/// Fill the lower triangle of `g` with the Gram matrix of the equilibrated `vectors` in
/// double-double. The matrix is the caller's so that it is never copied (4 KiB).
pub(crate) fn scaled_gram<T: Element>(
    vectors: &[&[T]],
    g: &mut Square<Dd>,
) -> Result<GramInfo, GramError> {
    let (k, n) = check_vectors(vectors)?;
    let mut scales = [1.0f64; MAX_K];
    let mut exps = [0i32; MAX_K];
    let mut trivially_zero = k > n;
    for (i, v) in vectors.iter().enumerate() {
        let m = max_abs_checked(v)?; // every vector is checked, even after a zero is found
        trivially_zero |= m == 0.0;
        (scales[i], exps[i]) = pow2_scale(m);
    }
    if !trivially_zero {
        for i in 0..k {
            for j in 0..=i {
                g[i][j] = dot_dd(vectors[i], scales[i], vectors[j], scales[j]);
            }
        }
    }
    Ok(GramInfo {
        k,
        exps,
        trivially_zero,
    })
}

/// Pivots of the double-double LDLᵀ below this fraction of the largest diagonal are treated as
/// exact zeros: 8(n + k)·2^-106, the typical (√-growth) rounding level of the Gram entries and
/// the elimination, so a vector within ~3·√(n + k)·2^-53 of the span of the others counts as
/// in it. Linear rather than the worst-case quadratic γ_n² so that genuinely tiny volumes
/// (exactly representable near-collinear tuples, found by the stress test) are still resolved.
pub(crate) fn dd_zero_tol(n: usize, k: usize) -> f64 {
    8.0 * (n + k) as f64 * libm::scalbn(1.0, -106)
}

pub(crate) fn volume_scaled<T: Element>(vectors: &[&[T]]) -> Result<Scaled, GramError> {
    let mut g: Square<Dd> = [[Dd::ZERO; MAX_K]; MAX_K];
    let info = scaled_gram(vectors, &mut g)?;
    if info.trivially_zero {
        return Ok(Scaled::ZERO);
    }
    let f = ldl_pivoted(&mut g, info.k, dd_zero_tol(vectors[0].len(), info.k));
    let e: i64 = info.exps[..info.k].iter().map(|&e| e as i64).sum();
    Ok(sqrt_det(&g, &f).shift(e))
}

/// Volume of the parallelotope spanned by `vectors` (k = 1..=16 vectors of length n):
/// `sqrt(det AᵀA)` with A = [v1 … vk].
///
/// Guarantees, for finite input:
/// - never NaN, never negative, never above Hadamard's bound Π‖vi‖ by more than rounding;
/// - exactly `0.0` when k > n, when a vector is zero, or when a vector lies in the span of the
///   others to within the rounding of the double-double factorisation (a repeated vector, a
///   vector whose normalised distance from the span is below ~`3·√(n + k)·2^-53`);
/// - invariant to scaling by powers of two and homogeneous in each vector: no overflow or
///   underflow happens inside, whatever the magnitudes;
/// - relative error ≤ `(2k + 4)·2^-53 + 4·(n² + k³)·2^-106 / s²`, where s² is the smallest
///   LDLᵀ pivot of the equilibrated Gram matrix (the squared distance of the worst vector from
///   the span of the others, relative to its norm). For unit vectors with normalised volume
///   1e-8 and n = 512 that is below 1e-10.
///
/// Errors: `EmptyInput` (no vectors or n = 0), `TooManyVectors`, `DimensionMismatch`,
/// `NonFinite`, and `OutOfRange` when the volume exceeds `f64::MAX`. A volume in f64's
/// subnormal range (< 2.2e-308, e.g. sixteen vectors of norm 1e-30) keeps fewer digits, and
/// below it returns 0; [`log_volume`] is exact to the stated bound at any magnitude.
///
/// ```
/// use gram_nostd::volume;
/// // A 3-4-5 triangle's side and a vector orthogonal to it: area 5 · 5.
/// assert_eq!(volume(&[&[3.0f32, 4.0, 0.0][..], &[0.0, 0.0, 5.0]]).unwrap(), 25.0);
/// // A repeated vector spans no volume: exactly 0, not rounding noise.
/// let v = [0.3f64, -1.2, 0.5];
/// assert_eq!(volume(&[&v[..], &v]).unwrap(), 0.0);
/// ```
pub fn volume<T: Element>(vectors: &[&[T]]) -> Result<f64, GramError> {
    let v = volume_scaled(vectors)?.to_f64();
    if v.is_finite() {
        Ok(v)
    } else {
        Err(GramError::OutOfRange)
    }
}

/// Natural logarithm of [`volume`]; `-inf` for a zero volume. Never overflows: use it for
/// large k or extreme magnitudes. Absolute error ≈ the relative error bound of [`volume`].
pub fn log_volume<T: Element>(vectors: &[&[T]]) -> Result<f64, GramError> {
    Ok(volume_scaled(vectors)?.ln())
}

/// The Gram determinant `det AᵀA = volume²`, with the guarantees of [`volume`] (relative error
/// doubles). `OutOfRange` when it exceeds `f64::MAX`.
pub fn gram_determinant<T: Element>(vectors: &[&[T]]) -> Result<f64, GramError> {
    let v = volume_scaled(vectors)?;
    let d = Scaled {
        mant: v.mant * v.mant,
        exp2: 2 * v.exp2,
    }
    .to_f64();
    if d.is_finite() {
        Ok(d)
    } else {
        Err(GramError::OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_square_and_cube() {
        let e1 = [1.0f32, 0.0, 0.0];
        let e2 = [0.0f32, 1.0, 0.0];
        let e3 = [0.0f32, 0.0, 1.0];
        assert_eq!(volume(&[&e1[..], &e2, &e3]).unwrap(), 1.0);
        assert_eq!(volume(&[&e1[..], &e2]).unwrap(), 1.0);
        let d = [3.0f64, 4.0, 0.0];
        assert_eq!(volume(&[&d[..]]).unwrap(), 5.0);
    }

    #[test]
    fn edge_cases_are_exact_zero_or_errors() {
        let a = [1.0f32, 2.0];
        let z = [0.0f32, 0.0];
        // In the span of e1, e2 although 0.6f32² + 0.8f32² ≠ 1.
        let e1 = [1.0f32, 0.0, 0.0];
        let e2 = [0.0f32, 1.0, 0.0];
        assert_eq!(volume(&[&[0.6f32, 0.8, 0.0][..], &e1, &e2]).unwrap(), 0.0);
        assert_eq!(volume(&[&a[..], &a]).unwrap(), 0.0);
        assert_eq!(volume(&[&a[..], &z]).unwrap(), 0.0);
        assert_eq!(volume(&[&a[..], &[2.0, 1.0], &[5.0, 5.0]]).unwrap(), 0.0);
        assert_eq!(volume::<f32>(&[]), Err(GramError::EmptyInput));
        assert_eq!(volume::<f32>(&[&[]]), Err(GramError::EmptyInput));
        assert_eq!(
            volume(&[&a[..], &[1.0]]),
            Err(GramError::DimensionMismatch {
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            volume(&[&z[..], &[f32::NAN, 0.0]]),
            Err(GramError::NonFinite)
        );
        let many = [&a[..]; 17];
        assert_eq!(volume(&many), Err(GramError::TooManyVectors { k: 17 }));
        assert_eq!(log_volume(&[&a[..], &a]).unwrap(), f64::NEG_INFINITY);
    }

    #[test]
    fn subnormal_volumes_lose_digits_but_log_volume_does_not() {
        // Fuzzer find (CI smoke): the volume of tiny f32 vectors lands in f64's subnormal range.
        let tiny: [[f32; 4]; 4] = core::array::from_fn(|i| {
            core::array::from_fn(|j| if i % 4 == j { 1e-30 } else { 0.0 })
        });
        let vs: [&[f32]; 4] = core::array::from_fn(|i| &tiny[i][..]);
        let v = volume(&vs).unwrap();
        let lv = log_volume(&vs).unwrap();
        assert!((lv - 4.0 * (1e-30f32 as f64).ln()).abs() < 1e-9, "{lv}");
        // 1e-120 is normal: both agree.
        assert!((v.ln() - lv).abs() < 1e-9);
        let tinier: [[f64; 4]; 4] =
            core::array::from_fn(|i| core::array::from_fn(|j| if i == j { 1e-80 } else { 0.0 }));
        let ws: [&[f64]; 4] = core::array::from_fn(|i| &tinier[i][..]);
        let v = volume(&ws).unwrap(); // 1e-320: subnormal
        assert!(v > 0.0 && !v.is_normal());
        assert!((log_volume(&ws).unwrap() - 4.0 * 1e-80f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn huge_f64_vectors_overflow_only_the_f64_result() {
        let v: [[f64; 16]; 16] =
            core::array::from_fn(|i| core::array::from_fn(|j| if i == j { 1e300 } else { 0.0 }));
        let refs: [&[f64]; 16] = core::array::from_fn(|i| &v[i][..]);
        assert_eq!(volume(&refs), Err(GramError::OutOfRange));
        let lv = log_volume(&refs).unwrap();
        assert!((lv - 16.0 * 1e300f64.ln()).abs() < 1e-9, "{lv}");
    }
}
