//! Diagonally pivoted LDLᵀ of a small symmetric positive semidefinite matrix, generic over the
//! working precision (`f64` for given Gram matrices, double-double for Gram matrices we form).

use crate::MAX_K;
use crate::dd::Dd;
use core::ops::{Add, Div, Mul, Sub};

/// The arithmetic the factorisation needs.
pub trait Field:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    const ZERO: Self;
    fn to_f64(self) -> f64;
}

impl Field for f64 {
    const ZERO: f64 = 0.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

impl Field for Dd {
    const ZERO: Dd = Dd::ZERO;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        Dd::to_f64(self)
    }
}

/// A k×k matrix in fixed storage (no heap); only the leading k×k block is used.
pub type Square<F> = [[F; MAX_K]; MAX_K];

/// Pivoting record of [`ldl_pivoted`]: `Pᵀ A P = L D Lᵀ` where row/column `j` of the permuted
/// matrix is row/column `perm[j]` of `A`. The factors themselves overwrite the matrix: the unit
/// lower triangle of L below the diagonal, D on the diagonal, in pivot order.
#[derive(Clone, Copy, Debug)]
pub struct Ldl {
    pub k: usize,
    pub perm: [usize; MAX_K],
    /// Number of pivots that came out positive. When `rank < k` the matrix is singular to
    /// working precision and pivots `rank..k` are reported as zero.
    pub rank: usize,
}

impl Ldl {
    /// The j-th pivot (in pivot order) of the factored matrix `lu`; zero beyond `rank`.
    #[inline]
    pub fn pivot<F: Field>(&self, lu: &Square<F>, j: usize) -> F {
        if j < self.rank { lu[j][j] } else { F::ZERO }
    }
}

/// Factor, in place, the symmetric matrix whose lower triangle is in `a[..k][..k]`, choosing at
/// each step the largest remaining diagonal (complete pivoting restricted to the diagonal, the
/// stable choice for semidefinite matrices: |l_ij| ≤ 1). The factorisation stops at the first
/// pivot ≤ `zero_tol · max_i a_ii`: such a pivot is below the rounding error of the working
/// precision (callers pass that bound), so the determinant is reported as exactly zero rather
/// than as rounding noise of either sign. In place because a 16×16 double-double matrix is
/// 4 KiB: copies of it dominate the stack of an embedded caller.
pub fn ldl_pivoted<F: Field>(a: &mut Square<F>, k: usize, zero_tol: f64) -> Ldl {
    debug_assert!(k <= MAX_K);
    let mut perm = [0usize; MAX_K];
    for (i, p) in perm.iter_mut().enumerate() {
        *p = i;
    }
    // Mirror the lower triangle so row swaps can read whole rows.
    for i in 0..k {
        for j in 0..i {
            a[j][i] = a[i][j];
        }
    }
    let max_diag = (0..k).map(|i| a[i][i].to_f64()).fold(0.0, f64::max);
    let threshold = zero_tol * max_diag;
    let mut rank = 0;
    for j in 0..k {
        // Pivot: largest remaining diagonal entry.
        let mut p = j;
        for i in j + 1..k {
            if a[i][i].to_f64() > a[p][p].to_f64() {
                p = i;
            }
        }
        if p != j {
            a.swap(p, j);
            for row in a.iter_mut().take(k) {
                row.swap(p, j);
            }
            perm.swap(p, j);
        }
        let d = a[j][j];
        if !(d.to_f64() > threshold) {
            break;
        }
        rank += 1;
        // Column j of L and the Schur complement update of the trailing block.
        for i in j + 1..k {
            a[i][j] = a[i][j] / d;
        }
        for i in j + 1..k {
            let lij = a[i][j];
            for c in j + 1..=i {
                // a[i][c] -= l_ij · d · l_cj, with d·l_cj = a[j][c] (the unscaled row j).
                a[i][c] = a[i][c] - lij * a[j][c];
                a[c][i] = a[i][c];
            }
        }
        // Mirror column j of L into row j, so later row/column swaps keep L consistent.
        for c in j + 1..k {
            a[j][c] = a[c][j];
        }
    }
    Ldl { k, perm, rank }
}

/// A positive value as `mant · 2^exp2` so that products of many pivots neither overflow nor
/// underflow before the caller decides the output type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaled {
    pub mant: f64,
    pub exp2: i64,
}

impl Scaled {
    pub const ZERO: Scaled = Scaled { mant: 0.0, exp2: 0 };
    pub const ONE: Scaled = Scaled { mant: 1.0, exp2: 0 };

    /// Multiply by `x ≥ 0` and renormalise the mantissa into [0.5, 1).
    #[inline]
    pub fn mul(self, x: f64) -> Scaled {
        let (m, e) = libm::frexp(self.mant * x);
        if m == 0.0 {
            return Scaled::ZERO;
        }
        Scaled {
            mant: m,
            exp2: self.exp2 + e as i64,
        }
    }

    /// Multiply by `2^e`.
    #[inline]
    pub fn shift(self, e: i64) -> Scaled {
        if self.mant == 0.0 {
            self
        } else {
            Scaled {
                mant: self.mant,
                exp2: self.exp2 + e,
            }
        }
    }

    /// The value as f64; `+inf` when it exceeds `f64::MAX`, `0` below the subnormal range.
    #[inline]
    pub fn to_f64(self) -> f64 {
        let e = self.exp2.clamp(-2200, 2200) as i32;
        libm::scalbn(self.mant, e)
    }

    /// Natural log; `-inf` for zero.
    #[inline]
    pub fn ln(self) -> f64 {
        if self.mant == 0.0 {
            f64::NEG_INFINITY
        } else {
            libm::log(self.mant) + self.exp2 as f64 * core::f64::consts::LN_2
        }
    }
}

/// `sqrt(Π pivots)` of a factorisation, as a [`Scaled`]; zero when `rank < k`.
pub fn sqrt_det<F: Field>(lu: &Square<F>, f: &Ldl) -> Scaled {
    if f.rank < f.k {
        return Scaled::ZERO;
    }
    let mut v = Scaled::ONE;
    for j in 0..f.k {
        v = v.mul(libm::sqrt(f.pivot(lu, j).to_f64()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_a_known_matrix() {
        // A = [[4,2],[2,3]]: det 8; pivots 4 then 3 − 2·2/4 = 2.
        let mut a: Square<f64> = [[0.0; MAX_K]; MAX_K];
        a[0][0] = 4.0;
        a[1][0] = 2.0;
        a[1][1] = 3.0;
        let f = ldl_pivoted(&mut a, 2, 0.0);
        assert_eq!(f.rank, 2);
        assert_eq!(f.pivot(&a, 0), 4.0);
        assert_eq!(f.pivot(&a, 1), 2.0);
        assert_eq!(a[1][0], 0.5);
        assert!((sqrt_det(&a, &f).to_f64() - 8f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn pivoting_picks_the_largest_diagonal() {
        let mut a: Square<f64> = [[0.0; MAX_K]; MAX_K];
        a[0][0] = 1.0;
        a[1][0] = 1.0;
        a[1][1] = 9.0;
        let f = ldl_pivoted(&mut a, 2, 0.0);
        assert_eq!(f.perm[0], 1);
        assert_eq!(f.pivot(&a, 0), 9.0);
        assert!((f.pivot(&a, 1) - (1.0 - 1.0 / 9.0)).abs() < 1e-15);
    }

    #[test]
    fn singular_stops_with_zero_determinant() {
        let mut a: Square<f64> = [[0.0; MAX_K]; MAX_K];
        for i in 0..3 {
            for j in 0..=i {
                a[i][j] = 2.0;
            }
        }
        let f = ldl_pivoted(&mut a, 3, 0.0);
        assert_eq!(f.rank, 1);
        assert_eq!(sqrt_det(&a, &f), Scaled::ZERO);
    }

    #[test]
    fn scaled_survives_products_beyond_f64() {
        let mut v = Scaled::ONE;
        for _ in 0..20 {
            v = v.mul(1e300);
        }
        assert!((v.ln() - 20.0 * 1e300f64.ln()).abs() < 1e-9);
        assert_eq!(v.to_f64(), f64::INFINITY);
    }
}
