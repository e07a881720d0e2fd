//! Determinant and volume from a Gram matrix the caller already has (e.g. dot products from a
//! GEMM), equilibrated and factored in f64, with a condition estimate.

use crate::ldl::{Ldl, Scaled, Square, ldl_pivoted, sqrt_det};
use crate::{GramError, MAX_K};

/// Factorisation of an equilibrated Gram matrix `Ĝ = D^-½ G D^-½` (D = diag G).
///
/// Accuracy is limited by the input: if G's entries carry relative errors ε (e.g. f32 dot
/// products, ε ≈ √n·2^-24), the determinant's relative error is about `k·ε·κ(Ĝ)`, which
/// [`GramFactor::condition`] estimates. For inputs that come from vectors, prefer
/// [`crate::volume`], which does not depend on κ(Ĝ) this way.
#[derive(Clone, Debug)]
pub struct GramFactor {
    lu: Square<f64>,
    ldl: Ldl,
    /// Π sqrt(G_ii) — the equilibration removed from the determinant.
    diag_sqrt: Scaled,
    /// 1/sqrt(G_ii) (0 for a zero diagonal).
    inv_sqrt: [f64; MAX_K],
    zero: bool,
}

impl GramFactor {
    /// Factor the k×k Gram matrix `g` (row-major, `g.len() == k·k`; only the lower triangle is
    /// read). A zero diagonal entry (zero vector) gives a zero determinant.
    ///
    /// Errors: `EmptyInput` (k = 0), `TooManyVectors` (k > 16), `DimensionMismatch`,
    /// `NonFinite`, `NotPositiveSemidefinite` (a negative diagonal entry).
    pub fn new(g: &[f64], k: usize) -> Result<GramFactor, GramError> {
        if k == 0 {
            return Err(GramError::EmptyInput);
        }
        if k > MAX_K {
            return Err(GramError::TooManyVectors { k });
        }
        if g.len() != k * k {
            return Err(GramError::DimensionMismatch {
                expected: k * k,
                found: g.len(),
            });
        }
        let mut inv_sqrt = [0.0f64; MAX_K];
        let mut diag_sqrt = Scaled::ONE;
        let mut zero = false;
        for i in 0..k {
            for j in 0..=i {
                if !g[i * k + j].is_finite() {
                    return Err(GramError::NonFinite);
                }
            }
            let d = g[i * k + i];
            if d < 0.0 {
                return Err(GramError::NotPositiveSemidefinite);
            }
            zero |= d == 0.0;
            let s = libm::sqrt(d);
            diag_sqrt = diag_sqrt.mul(s);
            inv_sqrt[i] = if d > 0.0 { 1.0 / s } else { 0.0 };
        }
        let mut a: Square<f64> = [[0.0; MAX_K]; MAX_K];
        for i in 0..k {
            for j in 0..i {
                // Cauchy–Schwarz bounds |ĝ_ij| by 1; clamp what rounding pushed past it.
                a[i][j] = (g[i * k + j] * inv_sqrt[i] * inv_sqrt[j]).clamp(-1.0, 1.0);
            }
            a[i][i] = if zero { 0.0 } else { 1.0 };
        }
        // Pivots below k·2^-52 of the unit diagonal are f64 rounding noise.
        let ldl = ldl_pivoted(&mut a, k, k as f64 * f64::EPSILON);
        Ok(GramFactor {
            lu: a,
            ldl,
            diag_sqrt,
            inv_sqrt,
            zero,
        })
    }

    fn sqrt_det_scaled(&self) -> Scaled {
        if self.zero {
            return Scaled::ZERO;
        }
        let s = sqrt_det(&self.lu, &self.ldl);
        Scaled {
            mant: s.mant * self.diag_sqrt.mant,
            exp2: s.exp2 + self.diag_sqrt.exp2,
        }
    }

    /// `sqrt(det G)`, ≥ 0. `OutOfRange` if it exceeds `f64::MAX`.
    pub fn volume(&self) -> Result<f64, GramError> {
        finite(self.sqrt_det_scaled().to_f64())
    }

    /// `det G`, ≥ 0 (a pivot below f64 rounding of the equilibrated matrix makes it exactly 0). `OutOfRange` if it
    /// exceeds `f64::MAX`.
    pub fn determinant(&self) -> Result<f64, GramError> {
        let s = self.sqrt_det_scaled();
        finite(
            Scaled {
                mant: s.mant * s.mant,
                exp2: 2 * s.exp2,
            }
            .to_f64(),
        )
    }

    /// `ln sqrt(det G)`; `-inf` when the determinant is zero.
    pub fn log_volume(&self) -> f64 {
        self.sqrt_det_scaled().ln()
    }

    /// 1-norm condition number κ₁(Ĝ) = ‖Ĝ‖₁‖Ĝ⁻¹‖₁ of the equilibrated matrix, computed exactly
    /// from the factors (k ≤ 16 makes the explicit inverse cheap); `+inf` when singular.
    pub fn condition(&self) -> f64 {
        let k = self.ldl.k;
        if self.is_singular() {
            return f64::INFINITY;
        }
        let l = &self.lu;
        let mut norm_inv = 0.0f64;
        let mut norm_g = 0.0f64;
        for c in 0..k {
            // Column c of Ĝ (in pivot order) = L D Lᵀ e_c, for ‖Ĝ‖₁.
            let mut col = 0.0;
            for r in 0..k {
                let mut s = 0.0;
                for t in 0..=r.min(c) {
                    let lrt = if r == t { 1.0 } else { l[r][t] };
                    let lct = if c == t { 1.0 } else { l[c][t] };
                    s += lrt * l[t][t] * lct;
                }
                col += libm::fabs(s);
            }
            norm_g = norm_g.max(col);
            let x = self.pivoted_inverse_column(c);
            norm_inv = norm_inv.max(x[..k].iter().map(|v| libm::fabs(*v)).sum());
        }
        norm_g * norm_inv
    }

    /// True when a pivot fell below f64 rounding (or a diagonal entry was zero): det G = 0.
    pub fn is_singular(&self) -> bool {
        self.zero || self.ldl.rank < self.ldl.k
    }

    /// Column c (pivot order) of (PᵀĜP)⁻¹ = L⁻ᵀ D⁻¹ L⁻¹; the factorisation must be regular.
    fn pivoted_inverse_column(&self, c: usize) -> [f64; MAX_K] {
        let (k, l) = (self.ldl.k, &self.lu);
        // Solve L y = e_c, z = D⁻¹ y, Lᵀ x = z.
        let mut x = [0.0f64; MAX_K];
        x[c] = 1.0;
        for r in c + 1..k {
            let mut s = 0.0;
            for t in c..r {
                s += l[r][t] * x[t];
            }
            x[r] = -s;
        }
        for (r, xr) in x.iter_mut().enumerate().take(k) {
            *xr /= l[r][r];
        }
        for r in (0..k).rev() {
            let mut s = x[r];
            for t in r + 1..k {
                s -= l[t][r] * x[t];
            }
            x[r] = s;
        }
        x
    }

    /// `½·vol·G⁻¹ = ∂ sqrt(det G) / ∂G` (row-major k×k into `out`), the gradient a training
    /// backend needs. Formed as ½·(vol/√(g_ii g_jj))·(Ĝ⁻¹)_ij so nothing overflows that the
    /// result does not. Where G is singular to working precision (vol = 0) it writes zeros:
    /// vol attains its global minimum there, so 0 is a valid (Clarke) subgradient, and the
    /// published recipe's sqrt(|det|) would give NaN. `DimensionMismatch` if `out` is not k×k.
    pub fn volume_gradient(&self, out: &mut [f64]) -> Result<(), GramError> {
        let k = self.ldl.k;
        if out.len() != k * k {
            return Err(GramError::DimensionMismatch {
                expected: k * k,
                found: out.len(),
            });
        }
        out.fill(0.0);
        if self.is_singular() {
            return Ok(());
        }
        // vol/√(g_ii g_jj) = sqrt(det Ĝ) · Π_t √g_tt / (√g_ii √g_jj): plain f64 when vol is a
        // normal number (the common case), scaled arithmetic otherwise so nothing overflows
        // that the result does not.
        let s = self.sqrt_det_scaled();
        let vol = s.to_f64();
        let perm = &self.ldl.perm;
        for c in 0..k {
            let x = self.pivoted_inverse_column(c);
            for r in 0..k {
                let (i, j) = (perm[r], perm[c]);
                let w = self.inv_sqrt[i] * self.inv_sqrt[j];
                out[i * k + j] = if vol.is_normal() && w.is_normal() {
                    0.5 * x[r] * (vol * w)
                } else {
                    0.5 * x[r] * s.mul(w).to_f64()
                };
            }
        }
        Ok(())
    }
}

fn finite(v: f64) -> Result<f64, GramError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(GramError::OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_determinant_and_condition() {
        // G = [[4, 2], [2, 9]]: det 32; Ĝ = [[1, 1/3], [1/3, 1]], κ₁ = (4/3)/(1−1/9)·(4/3)
        let f = GramFactor::new(&[4.0, 2.0, 2.0, 9.0], 2).unwrap();
        assert!((f.determinant().unwrap() - 32.0).abs() < 1e-12);
        assert!((f.volume().unwrap() - 32f64.sqrt()).abs() < 1e-12);
        let expected = (4.0 / 3.0) * (4.0 / 3.0) / (8.0 / 9.0);
        assert!(
            (f.condition() - expected).abs() < 1e-12,
            "{}",
            f.condition()
        );
    }

    #[test]
    fn extreme_scales_do_not_overflow_inside() {
        // Gram of vectors with norm 1e200: entries 1e400 do not exist in f64, so use 1e150.
        let g = [1e300, 0.0, 0.0, 1e300];
        let f = GramFactor::new(&g, 2).unwrap();
        assert!((f.volume().unwrap() / 1e300 - 1.0).abs() < 1e-15);
        assert_eq!(f.determinant(), Err(GramError::OutOfRange));
        assert!((f.log_volume() - 1e300f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn volume_gradient_matches_finite_differences() {
        let g = [2.0, 0.3, -0.4, 0.3, 1.5, 0.2, -0.4, 0.2, 1.1];
        let f = GramFactor::new(&g, 3).unwrap();
        let mut grad = [0.0; 9];
        f.volume_gradient(&mut grad).unwrap();
        for idx in [0usize, 1, 4, 5, 8] {
            let (i, j) = (idx / 3, idx % 3);
            let h = 1e-6;
            let bump = |d: f64| {
                let mut p = g;
                p[idx] += d;
                if i != j {
                    p[j * 3 + i] += d; // keep it symmetric: the derivative then counts both
                }
                GramFactor::new(&p, 3).unwrap().volume().unwrap()
            };
            let fd = (bump(h) - bump(-h)) / (2.0 * h);
            let analytic = if i == j {
                grad[idx]
            } else {
                grad[idx] + grad[j * 3 + i]
            };
            assert!((fd - analytic).abs() < 1e-8, "{idx}: {fd} vs {analytic}");
        }
        let singular = GramFactor::new(&[1.0, 1.0, 1.0, 1.0], 2).unwrap();
        let mut g2 = [1.0; 4];
        singular.volume_gradient(&mut g2).unwrap();
        assert_eq!(g2, [0.0; 4]);
    }

    #[test]
    fn errors_and_zero() {
        assert_eq!(
            GramFactor::new(&[-1.0], 1).unwrap_err(),
            GramError::NotPositiveSemidefinite
        );
        assert_eq!(
            GramFactor::new(&[1.0, f64::NAN, f64::NAN, 1.0], 2).unwrap_err(),
            GramError::NonFinite
        );
        assert_eq!(
            GramFactor::new(&[1.0; 3], 2).unwrap_err(),
            GramError::DimensionMismatch {
                expected: 4,
                found: 3
            }
        );
        let f = GramFactor::new(&[1.0, 0.0, 0.0, 0.0], 2).unwrap();
        assert_eq!(f.determinant().unwrap(), 0.0);
        assert_eq!(f.condition(), f64::INFINITY);
        let f = GramFactor::new(&[1.0, 1.0, 1.0, 1.0], 2).unwrap();
        assert_eq!(f.determinant().unwrap(), 0.0);
    }
}
