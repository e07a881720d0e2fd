//! Candidate precomputation: factor a candidate tuple (the k−1 non-anchor vectors of a column of
//! the volume matrix) once, then get vol(anchor, candidate) for many anchors from k−1 dot
//! products, with an a-posteriori error bound that says when to recompute on the exact path.
//!
//! With M = [m1 … m_{k−1}] = QR, vol(a, M) = vol(M) · ‖a − QQᵀa‖ and
//! ‖a − QQᵀa‖² = ‖a‖² − ‖Qᵀa‖², Qᵀa = R⁻ᵀ Mᵀa. The candidate stores W = R⁻ᵀ (pivoted, with the
//! equilibration folded in) computed in double-double, so a pair costs (k−1)(k)/2 multiply-adds
//! after the dot products `Mᵀa` — which a GEMM can supply for a whole batch.
//!
//! The subtraction ‖a‖² − ‖Qᵀa‖² cancels when a lies nearly in span(M): an absolute error δ in
//! the dot products becomes a relative error ~δ‖a‖/r² in the volume. [`Candidate::pair_volume`]
//! bounds that from the caller's stated dot-product accuracy, so callers keep the fast path for
//! the (vast majority of) well-conditioned pairs and send the rest to [`crate::volume`].

use crate::dd::Dd;
use crate::element::pow2_scale;
use crate::ldl::{Field, Ldl, Scaled, Square, ldl_pivoted, sqrt_det};
use crate::single::{Arithmetic, IN_RANGE, U32, dot2_32, dot2_rel_err, sqrt32};
use crate::volume::{dd_zero_tol, scaled_gram};
use crate::{Element, GramError, MAX_K};

const M_MAX: usize = MAX_K - 1;
const TRI: usize = M_MAX * (M_MAX + 1) / 2;
const U: f64 = f64::EPSILON / 2.0;

/// A factored candidate tuple of `m = k − 1` vectors (0 ≤ m ≤ 15), in fixed storage (1.7 KiB:
/// the factor in f64 and in f32).
#[derive(Clone, Debug)]
pub struct Candidate {
    // Hot fields first: for small k a pair touches only the first cache lines.
    m: u8,
    /// Pivot order: row i of W reads dots `perm[0..=i]`.
    perm: [u8; M_MAX],
    /// vol(M) as a plain f64 when it is a normal number (else 0 and `volume` is used).
    volume_f64: f64,
    /// wn[i] = Σ_a |W[i][a]|·‖m_perm[a]‖: how W amplifies dot-product errors.
    wn: [f64; M_MAX],
    /// Packed lower triangle of W: row i holds W[i][0..=i].
    w: [f64; TRI],
    dim: usize,
    volume: Scaled,
    /// vol(M) = 0 (dependent vectors, a zero vector, or k > n): every pair volume is exactly 0.
    degenerate: bool,
    /// W not representable in f64 (only for f64 inputs of extreme magnitude): no fast path.
    fast_path: bool,
    /// ε_G: see [`Candidate::gram_rel_err`]. 0 for the `Double` factorisation.
    gram_err: f64,
    /// ½·ε_G·Σwn²: a bound on vol(M)'s relative error from ε_G.
    vol_err: f64,
    /// Every vector's largest magnitude (or norm) lies in [`crate::single::IN_RANGE`]: the
    /// single-precision dot products' bounds hold for pairs with this candidate.
    in_range32: bool,
    /// The factor in f32, for [`Candidate::pair_volume32`].
    f32s: Factor32,
}

/// A candidate's factor rounded to f32 (the single-precision fast path reads only this).
#[derive(Clone, Debug)]
struct Factor32 {
    /// Usable: in range, finite, vol(M) a normal f32.
    usable: bool,
    /// W rounded to nearest (packed like `Candidate::w`), `wn` rounded up, vol(M) to nearest.
    w: [f32; TRI],
    wn: [f32; M_MAX],
    vol: f32,
    /// Bound on the relative error of `vol` (its rounding and vol(M)'s own error).
    vol_err: f32,
    /// `Candidate::gram_err` rounded up.
    gram_err: f32,
}

impl Factor32 {
    const UNUSABLE: Factor32 = Factor32 {
        usable: false,
        w: [0.0; TRI],
        wn: [0.0; M_MAX],
        vol: 1.0,
        vol_err: 0.0,
        gram_err: 0.0,
    };
}

/// A pair volume from the fast path and a bound on its relative error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairVolume {
    /// The volume; meaningless when `rel_err_bound` is infinite.
    pub volume: f64,
    /// First-order bound on |computed − exact| / exact, from the stated dot-product accuracy,
    /// the rounding of W, and the cancellation in ‖a‖² − ‖Qᵀa‖²; `+inf` when the cancellation
    /// leaves no correct digit or an input was not finite. `0` when the volume is exactly 0.
    pub rel_err_bound: f64,
}

impl Candidate {
    /// Factor the candidate tuple `vectors` (k − 1 of them, each of length n), in the target's
    /// [`Arithmetic::NATIVE`] arithmetic (see [`Candidate::new_with`]). `anchor_dim` is n; it
    /// is checked here so that k > n gives a degenerate (all-zero) candidate.
    ///
    /// Errors: `TooManyVectors` (more than 15), `DimensionMismatch`, `EmptyInput` (n = 0),
    /// `NonFinite`.
    pub fn new<T: Element>(vectors: &[&[T]], anchor_dim: usize) -> Result<Candidate, GramError> {
        Self::new_with(Arithmetic::NATIVE, vectors, anchor_dim)
    }

    /// [`Candidate::new`] in a chosen arithmetic.
    /// - `Double`: the Gram matrix in double-double (as if formed in 106-bit arithmetic) and its
    ///   pivoted LDLᵀ in double-double: W is exact to f64 rounding whatever the conditioning.
    /// - `Single` (f32 inputs in [`crate::single::IN_RANGE`]): the Gram matrix from compensated
    ///   f32 dot products ([`crate::single::dot2_32`], error ε_G ≈ 1e-10 relative for n = 512)
    ///   and the LDLᵀ in f64 — ~100× fewer instructions without f64 hardware. Every pair bound
    ///   then carries ε_G (see [`Candidate::gram_rel_err`]), so the scoring contracts are
    ///   unchanged; a tuple too close to dependent for ε_G to resolve is factored as `Double`.
    pub fn new_with<T: Element>(
        arithmetic: Arithmetic,
        vectors: &[&[T]],
        anchor_dim: usize,
    ) -> Result<Candidate, GramError> {
        if vectors.len() > M_MAX {
            return Err(GramError::TooManyVectors {
                k: vectors.len() + 1,
            });
        }
        if anchor_dim == 0 {
            return Err(GramError::EmptyInput);
        }
        for v in vectors {
            if v.len() != anchor_dim {
                return Err(GramError::DimensionMismatch {
                    expected: anchor_dim,
                    found: v.len(),
                });
            }
        }
        let mut c = Candidate::unfactored(vectors.len(), anchor_dim);
        if vectors.is_empty() {
            return Ok(c);
        }
        if arithmetic == Arithmetic::Single {
            let mut v32: [&[f32]; M_MAX] = [&[]; M_MAX];
            let mut all = true;
            for (d, v) in v32.iter_mut().zip(vectors) {
                match T::as_f32_slice(v) {
                    Some(x) => *d = x,
                    None => all = false,
                }
            }
            if all && c.factor_single(&v32[..vectors.len()])? {
                return Ok(c);
            }
        }
        c.factor_double(vectors)?;
        Ok(c)
    }

    /// A candidate of `m` vectors of length `dim` with nothing factored yet (volume 1, W = 0).
    fn unfactored(m: usize, dim: usize) -> Candidate {
        Candidate {
            m: m as u8,
            dim,
            perm: [0; M_MAX],
            w: [0.0; TRI],
            wn: [0.0; M_MAX],
            volume: Scaled::ONE,
            volume_f64: 1.0,
            degenerate: false,
            fast_path: true,
            in_range32: true,
            gram_err: 0.0,
            vol_err: 0.0,
            f32s: Factor32::UNUSABLE,
        }
    }

    /// Mark the candidate as spanning nothing: every pair volume is exactly 0.
    fn set_degenerate(&mut self) {
        self.degenerate = true;
        self.volume = Scaled::ZERO;
        self.volume_f64 = 0.0;
    }

    /// The `Double` factorisation: double-double Gram matrix and LDLᵀ. Not inlined, and neither
    /// is `factor_single`: merged into one frame their work matrices (4 + 2 KiB) would both sit
    /// on an embedded caller's stack.
    #[inline(never)]
    fn factor_double<T: Element>(&mut self, vectors: &[&[T]]) -> Result<(), GramError> {
        let (m, n) = (vectors.len(), self.dim);
        let mut gram: Square<Dd> = [[Dd::ZERO; MAX_K]; MAX_K];
        let sg = scaled_gram(vectors, &mut gram)?;
        if sg.trivially_zero || m + 1 > n {
            self.set_degenerate();
            return Ok(());
        }
        // Norms before the factorisation overwrites the diagonal: ‖m_j‖ = sqrt(Ĝ_jj)·2^e_j.
        let mut norms = [0.0f64; M_MAX];
        for (j, nj) in norms.iter_mut().enumerate().take(m) {
            *nj = libm::scalbn(libm::sqrt(gram[j][j].to_f64()), sg.exps[j]);
        }
        // max|m_j| ∈ [2^e_j, 2^(e_j+1)): the single-precision range is [2^-40, 2^40).
        self.in_range32 = sg.exps[..m].iter().all(|e| (-40..40).contains(e));
        let f = ldl_pivoted(&mut gram, m, dd_zero_tol(n, m));
        if f.rank < m {
            self.volume = Scaled::ZERO;
            self.volume_f64 = 0.0;
            if gram[f.rank][f.rank].to_f64() <= 0.0 {
                // A pivot exactly zero: the vectors are dependent; every pair volume is 0.
                self.degenerate = true;
            } else {
                // A pivot below the tolerance but not zero: singular to working precision
                // on its own, yet with an anchor the tuple's own factorisation may resolve it
                // (its threshold is relative to its largest diagonal). Every pair then takes
                // the exact path, so scores agree with `volume` (found by the volume fuzzer).
                self.fast_path = false;
            }
            return Ok(());
        }
        self.finish(&mut gram, &f, &sg.exps, &norms);
        self.derive_error_terms();
        Ok(())
    }

    /// The `Single` factorisation: compensated f32 Gram matrix, f64 LDLᵀ. Returns `false`
    /// (nothing changed) where it cannot decide as well as `Double` would: a zero or
    /// non-finite vector, a norm outside the single-precision range, or a pivot within the
    /// Gram matrix's error of zero.
    #[inline(never)]
    fn factor_single(&mut self, vectors: &[&[f32]]) -> Result<bool, GramError> {
        let (m, n) = (vectors.len(), self.dim);
        let mut exps = [0i32; MAX_K];
        let mut norms = [0.0f64; M_MAX];
        let mut gram: Square<f64> = [[0.0; MAX_K]; MAX_K];
        let range = IN_RANGE.start as f64..IN_RANGE.end as f64;
        for j in 0..m {
            // The diagonal decides the rest: a non-finite element makes it non-finite, a zero
            // vector (or one whose squares underflow) makes it 0, and either way — or with a
            // norm outside the single-precision range — the `Double` factorisation decides
            // (and reports `NonFinite` where it must).
            let d = dot2_32(vectors[j], vectors[j]);
            norms[j] = libm::sqrt(d);
            if !range.contains(&norms[j]) {
                return Ok(false);
            }
            exps[j] = pow2_scale(norms[j]).1;
            gram[j][j] = libm::scalbn(d, -2 * exps[j]);
        }
        if m + 1 > n {
            self.set_degenerate();
            return Ok(true);
        }
        for i in 0..m {
            for j in 0..i {
                gram[i][j] = libm::scalbn(dot2_32(vectors[i], vectors[j]), -(exps[i] + exps[j]));
            }
        }
        let eps = single_gram_rel_err(n, m);
        let f = ldl_pivoted(&mut gram, m, 16.0 * eps);
        if f.rank < m {
            return Ok(false);
        }
        self.finish(&mut gram, &f, &exps, &norms);
        self.gram_err = eps;
        self.derive_error_terms();
        // The bounds are first order in ε_G·Σwn²: keep them far inside their validity.
        Ok(self.vol_err <= 1e-6 || self.restore_unfactored())
    }

    /// Undo a factorisation (for `factor_single` to hand over to `factor_double`); `false`.
    fn restore_unfactored(&mut self) -> bool {
        *self = Candidate::unfactored(self.m as usize, self.dim);
        false
    }

    /// W, its row norms and vol(M) from the pivoted LDLᵀ of the equilibrated Gram matrix (in
    /// double-double or f64), then the derived f32 factor.
    fn finish<F: Field>(&mut self, g: &mut Square<F>, f: &Ldl, exps: &[i32], norms: &[f64]) {
        let m = self.m as usize;
        let e: i64 = exps[..m].iter().map(|&e| e as i64).sum();
        self.volume = sqrt_det(g, f).shift(e);
        let v = self.volume.to_f64();
        self.volume_f64 = if v.is_normal() { v } else { 0.0 };
        // X = L⁻¹ by forward substitution, written into the (mirrored, no longer needed)
        // strict upper triangle: X[i][a] lives at g[a][i] for a < i.
        for i in 0..m {
            for a in 0..i {
                // X[i][a] = −(L[i][a] + Σ_{t=a+1}^{i−1} L[i][t]·X[t][a])
                let mut s = g[i][a];
                for t in a + 1..i {
                    s = s + g[i][t] * g[a][t];
                }
                g[a][i] = F::ZERO - s;
            }
        }
        for i in 0..m {
            self.perm[i] = f.perm[i] as u8;
            let inv_sqrt_d = 1.0 / libm::sqrt(f.pivot(g, i).to_f64());
            let row = i * (i + 1) / 2;
            let mut wn = 0.0;
            for a in 0..=i {
                let j = f.perm[a];
                let x = if a == i { 1.0 } else { g[a][i].to_f64() };
                // Undo the power-of-two equilibration of vector j: d̂_j = 2^-e_j · d_j.
                let w = libm::scalbn(x * inv_sqrt_d, -exps[j]);
                self.w[row + a] = w;
                wn += libm::fabs(w) * norms[j];
            }
            self.wn[i] = wn;
            self.fast_path &= wn.is_finite();
        }
    }

    /// How far the factor's Gram matrix may be from the exact one, relative to ‖m_i‖‖m_j‖
    /// entrywise: 0 for the `Double` factorisation (its 2^-104 is below every bound's
    /// resolution), ε_G for `Single` (the compensated dot products and the f64 LDLᵀ). Pair
    /// bounds add ε_G·(Σᵢ|cᵢ|·wnᵢ)² to the residual's error and ½·ε_G·Σᵢwnᵢ² to vol(M)'s.
    pub fn gram_rel_err(&self) -> f64 {
        self.gram_err
    }

    /// `vol_err` from `gram_err` and `wn` (first-order perturbation of log det).
    fn derive_error_terms(&mut self) {
        let m = self.m as usize;
        let sum_sq: f64 = self.wn[..m].iter().map(|w| w * w).sum();
        self.vol_err = if self.gram_err == 0.0 {
            0.0
        } else {
            0.5 * self.gram_err * sum_sq * 1.01
        };
        self.fill_single();
    }

    /// Round the factor to f32 for [`Candidate::pair_volume32`]; leaves `single` false when a
    /// value does not fit (then pairs take the f64 paths).
    fn fill_single(&mut self) {
        let m = self.m as usize;
        self.f32s = Factor32::UNUSABLE;
        if self.degenerate || !self.fast_path || !self.in_range32 {
            return;
        }
        let f = &mut self.f32s;
        let mut finite = true;
        for (w32, &w) in f.w.iter_mut().zip(&self.w[..m * (m + 1) / 2]) {
            *w32 = w as f32;
            finite &= w32.is_finite();
        }
        for (wn32, &wn) in f.wn.iter_mut().zip(&self.wn[..m]) {
            // Rounded up: the rounding to nearest loses at most 2^-24 relative.
            *wn32 = (wn * (1.0 + libm::scalbn(1.0, -20))) as f32;
            finite &= wn32.is_finite();
        }
        f.vol = self.volume_f64 as f32;
        f.vol_err = (U32 as f64 + (2 * m + 4) as f64 * U + self.vol_err) as f32 * 1.01;
        f.gram_err = (self.gram_err * 1.01) as f32;
        f.usable = finite && f.vol.is_normal();
    }

    /// Number of vectors in the tuple (k − 1).
    pub fn len(&self) -> usize {
        self.m as usize
    }

    /// True for the empty tuple (k = 1: the "volume" of an anchor alone is its norm).
    pub fn is_empty(&self) -> bool {
        self.m == 0
    }

    /// Vector length n the candidate was built for.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The candidate tuple's own volume vol(m1, …, m_{k−1}); `+inf` beyond `f64::MAX`.
    pub fn volume(&self) -> f64 {
        self.volume.to_f64()
    }

    /// An orthonormal basis of span(vectors) — the Q of M = QR — row-major `len() × n` into
    /// `out`: q_i = Σ_a W\[i\]\[a\]·m_perm\[a\], accumulated in f64 from the double-double factor
    /// (orthogonal to ~2^-53·κ(M)). For a GPU or any backend that projects instead of using dot
    /// products. `vectors` must be the ones the candidate was built from. A degenerate
    /// candidate writes zeros (its pair volumes are 0 anyway).
    pub fn orthonormal_basis<T: Element>(
        &self,
        vectors: &[&[T]],
        out: &mut [f64],
    ) -> Result<(), GramError> {
        let (m, n) = (self.m as usize, self.dim);
        if vectors.len() != m || out.len() != m * n {
            return Err(GramError::DimensionMismatch {
                expected: m * n,
                found: out.len(),
            });
        }
        out.fill(0.0);
        if self.degenerate || !self.fast_path {
            return Ok(());
        }
        for i in 0..m {
            let row = &self.w[i * (i + 1) / 2..][..=i];
            let q = &mut out[i * n..(i + 1) * n];
            for (w, &j) in row.iter().zip(&self.perm[..=i]) {
                for (x, v) in q.iter_mut().zip(vectors[j as usize].iter()) {
                    *x += w * v.to_f64();
                }
            }
        }
        Ok(())
    }

    /// True when every pair volume with this candidate is exactly zero.
    pub fn is_degenerate(&self) -> bool {
        self.degenerate
    }

    /// vol(a, m1, …, m_{k−1}) from `anchor_norm_sq = ‖a‖²` and `dots[j] = a·m_j` (in the
    /// candidate's vector order), where the caller guarantees
    /// `|dots[j] error| ≤ dot_rel_err·‖a‖·‖m_j‖` (e.g. `(n/8 + 4)·2^-53` for
    /// [`crate::dot::dot_f64`]; an f32 GEMM needs `γ_n = n·2^-24`, or its probabilistic
    /// counterpart λ·√n·2^-24) and `|‖a‖² error| ≤ norm_rel_err·‖a‖²`. The two are separate
    /// because callers typically get ‖a‖² far more accurately than the cross dot products.
    /// Non-finite inputs give `rel_err_bound = +inf`, never NaN.
    #[inline]
    pub fn pair_volume(
        &self,
        anchor_norm_sq: f64,
        dots: &[f64],
        dot_rel_err: f64,
        norm_rel_err: f64,
    ) -> PairVolume {
        self.pair_volume_with_norm(
            anchor_norm_sq,
            libm::sqrt(anchor_norm_sq),
            dots,
            dot_rel_err,
            norm_rel_err,
        )
    }

    /// [`Candidate::pair_volume`] with `anchor_norm = sqrt(anchor_norm_sq)` supplied, for
    /// callers that score one anchor against many candidates (a square root less per pair).
    #[inline]
    pub fn pair_volume_with_norm(
        &self,
        anchor_norm_sq: f64,
        anchor_norm: f64,
        dots: &[f64],
        dot_rel_err: f64,
        norm_rel_err: f64,
    ) -> PairVolume {
        match self.residual(anchor_norm_sq, anchor_norm, dots, dot_rel_err, norm_rel_err) {
            Residual::Zero => PairVolume {
                volume: 0.0,
                rel_err_bound: 0.0,
            },
            Residual::Unreliable(r2) => PairVolume {
                volume: if r2 > 0.0 && r2.is_finite() {
                    self.volume.mul(libm::sqrt(r2)).to_f64()
                } else {
                    0.0
                },
                rel_err_bound: f64::INFINITY,
            },
            Residual::Value { r2, err } => PairVolume {
                volume: self.scaled_volume(r2),
                rel_err_bound: 0.5 * err / r2 + (2 * self.m as usize + 4) as f64 * U + self.vol_err,
            },
        }
    }

    /// The fast-path volume if its relative error bound is ≤ `tolerance`, else `None` (the
    /// caller recomputes). Same result as [`Candidate::pair_volume_with_norm`] without forming
    /// the bound: the hot loop of batched scoring saves a division per pair.
    #[inline]
    pub fn pair_volume_within(
        &self,
        anchor_norm_sq: f64,
        anchor_norm: f64,
        dots: &[f64],
        (dot_rel_err, norm_rel_err): (f64, f64),
        tolerance: f64,
    ) -> Option<f64> {
        match self.residual(anchor_norm_sq, anchor_norm, dots, dot_rel_err, norm_rel_err) {
            Residual::Zero => Some(0.0),
            Residual::Unreliable(_) => None,
            Residual::Value { r2, err } => {
                let slack = tolerance - (2 * self.m as usize + 4) as f64 * U - self.vol_err;
                (0.5 * err <= slack * r2).then(|| self.scaled_volume(r2))
            }
        }
    }

    /// The single-precision fast path: vol(a, M) from f32 quantities, if a certified bound on
    /// its relative error (rounding of the output included) is ≤ `tolerance`, else `None`
    /// (the caller refines). `nsq` is ‖a‖² with relative error ≤ 2^-24, `norm` ≥ ‖a‖, and
    /// `dots[j]` = a·m_j with `|error| ≤ dot_rel_err·‖a‖·‖m_j‖` (e.g. [`crate::single::dot32_rel_err`]).
    /// Exactly 0 for a degenerate candidate or a zero anchor; never NaN.
    ///
    /// The bound is the f64 path's (see [`Candidate::pair_volume`]) with f32's unit roundoff, W
    /// rounded to f32, and the bound's own evaluation in f32 covered by a 2^-12 relative margin.
    #[inline]
    pub fn pair_volume32(
        &self,
        nsq: f32,
        norm: f32,
        dots: &[f32],
        dot_rel_err: f32,
        tolerance: f32,
    ) -> Option<f32> {
        if self.degenerate || nsq == 0.0 {
            return Some(0.0);
        }
        let f = &self.f32s;
        if !f.usable {
            return None;
        }
        let m = self.m as usize;
        let dscale = (dot_rel_err + (m as f32 + 2.0) * U32) * norm;
        let (mut cc, mut err, mut cw) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..m {
            let row = &f.w[i * (i + 1) / 2..][..=i];
            let mut ci = 0.0f32;
            for (w, &j) in row.iter().zip(&self.perm[..=i]) {
                ci += w * dots[j as usize];
            }
            let dci = dscale * f.wn[i];
            cc += ci * ci;
            err += (2.0 * ci.abs() + dci) * dci;
            cw += ci.abs() * f.wn[i];
        }
        let r2 = nsq - cc;
        let err = (err + f.gram_err * cw * cw + (m as f32 + 3.0) * U32 * (nsq + cc))
            * (1.0 + 1.0 / 4096.0);
        let slack = tolerance - f.vol_err - 2.0 * U32;
        // `!(r2 > err)` also catches NaN from non-finite inputs.
        if !(r2 > err) || 0.5 * err > slack * r2 {
            return None;
        }
        let v = f.vol * sqrt32(r2);
        v.is_normal().then_some(v)
    }

    /// True when pairs with this candidate may use the single-precision dot products (every
    /// vector's largest magnitude in [`crate::single::IN_RANGE`]).
    pub fn in_single_range(&self) -> bool {
        self.in_range32
    }

    /// [`Candidate::pair_volume_within`] for many anchors at once, written so the compiler
    /// can vectorise across anchors: `dots[t][i]` is a·m_t for anchor i (one contiguous slice
    /// per candidate vector, each of length r), `norm_sq[i]`/`norm[i]` the anchors' ‖a‖² and
    /// ‖a‖, `scratch` at least (len() + 2)·r values. `out[i]` receives the volume, or NaN where
    /// the bound exceeds `tolerance` (the caller recomputes those pairs).
    ///
    /// Always inlined, so that a caller compiled for wider vectors (gram-host's AVX2 path) gets
    /// this loop compiled for them too; the arithmetic has no fused operations, so every target
    /// gives the same bits.
    #[inline(always)]
    pub fn pair_volumes_within(
        &self,
        (norm_sq, norm): (&[f64], &[f64]),
        dots: &[&[f32]],
        (dot_rel_err, norm_rel_err): (f64, f64),
        tolerance: f64,
        scratch: &mut [f64],
        out: &mut [f64],
    ) {
        let (m, r) = (self.m as usize, out.len());
        if self.degenerate {
            out.fill(0.0);
            return;
        }
        // A factor with a Gram error (prepared in single precision) is not batched here.
        if !self.fast_path
            || self.gram_err != 0.0
            || scratch.len() < (m + 2) * r
            || dots.len() < m
            || norm_sq.len() < r
            || norm.len() < r
        {
            out.fill(f64::NAN);
            return;
        }
        let (c, rest) = scratch.split_at_mut(m * r);
        let (cc, rest) = rest.split_at_mut(r);
        let err = &mut rest[..r];
        cc.fill(0.0);
        err.fill(0.0);
        let dscale = dot_rel_err + (m as f64 + 1.0) * U;
        for t in 0..m {
            let ct = &mut c[t * r..(t + 1) * r];
            ct.fill(0.0);
            let row = &self.w[t * (t + 1) / 2..][..=t];
            for (w, &j) in row.iter().zip(&self.perm[..=t]) {
                let d = &dots[j as usize][..r];
                for (x, &y) in ct.iter_mut().zip(d) {
                    *x += w * y as f64;
                }
            }
            let wn = self.wn[t];
            for i in 0..r {
                let dci = dscale * norm[i] * wn;
                cc[i] += ct[i] * ct[i];
                err[i] += (2.0 * libm::fabs(ct[i]) + dci) * dci;
            }
        }
        let slack = tolerance - (2 * m + 4) as f64 * U;
        let vol = self.volume_f64;
        for i in 0..r {
            let (r2, e) = residual_and_bound(norm_sq[i], cc[i], err[i], norm_rel_err);
            // `&`, not `&&`: no branch, so the loop vectorises.
            let ok = (r2 > e) & (0.5 * e <= slack * r2);
            let v = vol * sqrt_vectorisable(if ok { r2 } else { 0.0 });
            out[i] = if ok { v } else { f64::NAN };
        }
        // Rare: a zero anchor is exactly 0; a volume that left the normal range is redone
        // in scaled arithmetic. Looked for branch-free first, so the common case stays a
        // vector pass.
        let rare = (0..r).fold(false, |acc, i| {
            acc | (norm_sq[i] == 0.0) | (out[i].is_finite() & !out[i].is_normal())
        });
        if !rare {
            return;
        }
        for i in 0..r {
            if norm_sq[i] == 0.0 {
                out[i] = 0.0;
            } else if out[i].is_finite() && !out[i].is_normal() {
                out[i] = self.scaled_volume(norm_sq[i] - cc[i]);
            }
        }
    }

    /// Length in f64 values of the record of a candidate of `m` vectors ([`Candidate::record`]):
    /// 4 + 2m + m(m+1)/2 (11 for k = 3).
    pub const fn record_len(m: usize) -> usize {
        4 + 2 * m + m * (m + 1) / 2
    }

    /// The factor as a flat record of [`Candidate::record_len`]`(len())` f64 values, so that
    /// candidates factored once can be stored (a search index) and read back with
    /// [`Candidate::from_record`] bit for bit: `[vol(M) as f64, vol(M) mantissa, vol(M)
    /// exponent, flags, perm[..m], wn[..m], W packed by rows]`. Every value is an f64 that
    /// represents its field exactly (the exponent and the permutation are small integers; flags:
    /// 1 degenerate, 2 fast path, 4 in the single-precision range, 8 factored in single
    /// precision — its ε_G follows from m and n).
    pub fn record(&self, out: &mut [f64]) -> Result<(), GramError> {
        let m = self.m as usize;
        let tri = m * (m + 1) / 2;
        if out.len() != Self::record_len(m) {
            return Err(GramError::DimensionMismatch {
                expected: Self::record_len(m),
                found: out.len(),
            });
        }
        out[0] = self.volume_f64;
        out[1] = self.volume.mant;
        out[2] = self.volume.exp2 as f64;
        out[3] = (self.degenerate as u8
            | (self.fast_path as u8) << 1
            | (self.in_range32 as u8) << 2
            | ((self.gram_err != 0.0) as u8) << 3) as f64;
        for i in 0..m {
            out[4 + i] = self.perm[i] as f64;
            out[4 + m + i] = self.wn[i];
        }
        out[4 + 2 * m..].copy_from_slice(&self.w[..tri]);
        Ok(())
    }

    /// The candidate of `m` vectors of length `dim` stored by [`Candidate::record`]. The
    /// record is checked, so a damaged one is refused rather than trusted: flags, exponent and
    /// pivot order must be what `record` writes (a permutation of 0..m wherever the fast path
    /// reads it), every value finite, vol(M) ≥ 0 and the mantissa in {0} ∪ [0.5, 1]. Errors: `DimensionMismatch` (wrong length, `dim` = 0 or
    /// m > 15), `NonFinite`, `InvalidParameter` (any other inconsistency).
    pub fn from_record(m: usize, dim: usize, rec: &[f64]) -> Result<Candidate, GramError> {
        if m > M_MAX || dim == 0 || rec.len() != Self::record_len(m) {
            return Err(GramError::DimensionMismatch {
                expected: Self::record_len(m.min(M_MAX)),
                found: rec.len(),
            });
        }
        if rec.iter().any(|x| !x.is_finite()) {
            return Err(GramError::NonFinite);
        }
        let integral = |x: f64, lo: f64, hi: f64| x == libm::trunc(x) && (lo..=hi).contains(&x);
        let (vol, mant, exp2, flags) = (rec[0], rec[1], rec[2], rec[3]);
        let mant_ok = mant == 0.0 || (0.5..=1.0).contains(&mant);
        if vol < 0.0 || !mant_ok || !integral(exp2, -1e15, 1e15) || !integral(flags, 0.0, 15.0) {
            return Err(GramError::InvalidParameter);
        }
        let mut c = Candidate {
            m: m as u8,
            perm: [0; M_MAX],
            volume_f64: vol,
            wn: [0.0; M_MAX],
            w: [0.0; TRI],
            dim,
            volume: Scaled {
                mant,
                exp2: exp2 as i64,
            },
            degenerate: flags as u8 & 1 != 0,
            fast_path: flags as u8 & 2 != 0,
            in_range32: flags as u8 & 4 != 0,
            gram_err: if flags as u8 & 8 != 0 {
                single_gram_rel_err(dim, m)
            } else {
                0.0
            },
            vol_err: 0.0,
            f32s: Factor32::UNUSABLE,
        };
        // Degenerate and slow-path candidates are stored unpivoted (all zeros).
        let permuted = c.fast_path && !c.degenerate;
        let mut seen = [false; M_MAX];
        for i in 0..m {
            let p = rec[4 + i];
            if !integral(p, 0.0, (m - 1) as f64) || (permuted && seen[p as usize]) {
                return Err(GramError::InvalidParameter);
            }
            seen[p as usize] = true;
            c.perm[i] = p as u8;
            c.wn[i] = rec[4 + m + i];
        }
        c.w[..m * (m + 1) / 2].copy_from_slice(&rec[4 + 2 * m..]);
        c.derive_error_terms();
        Ok(c)
    }

    /// vol(M)·sqrt(r2): a plain product when it stays in the normal range, else scaled.
    #[inline]
    fn scaled_volume(&self, r2: f64) -> f64 {
        let r = libm::sqrt(r2);
        let plain = self.volume_f64 * r;
        if plain.is_normal() {
            plain
        } else {
            self.volume.mul(r).to_f64()
        }
    }

    /// ‖a − QQᵀa‖² and a bound on its absolute error (see [`Candidate::pair_volume`]).
    #[inline]
    fn residual(
        &self,
        anchor_norm_sq: f64,
        anchor_norm: f64,
        dots: &[f64],
        dot_rel_err: f64,
        norm_rel_err: f64,
    ) -> Residual {
        debug_assert!(dots.len() >= self.m as usize);
        if self.degenerate || anchor_norm_sq == 0.0 {
            return Residual::Zero;
        }
        let m = self.m as usize;
        let dc_scale = (dot_rel_err + (m as f64 + 1.0) * U) * anchor_norm;
        let mut cc = 0.0f64;
        let mut err = 0.0f64;
        let mut cw = 0.0f64;
        for i in 0..m {
            let row = &self.w[i * (i + 1) / 2..][..=i];
            let mut ci = 0.0;
            for (w, &j) in row.iter().zip(&self.perm[..=i]) {
                ci += w * dots[j as usize];
            }
            let dci = dc_scale * self.wn[i];
            cc += ci * ci;
            err += (2.0 * libm::fabs(ci) + dci) * dci;
            cw += libm::fabs(ci) * self.wn[i];
        }
        // The factor's own Gram error (0 for the double-double factorisation).
        let err = err + self.gram_err * cw * cw;
        let (r2, err) = residual_and_bound(anchor_norm_sq, cc, err, norm_rel_err);
        // `!(r2 > err)` also catches NaN from non-finite inputs.
        if !(r2 > err) || !self.fast_path || !err.is_finite() {
            Residual::Unreliable(r2)
        } else {
            Residual::Value { r2, err }
        }
    }
}

/// ε_G of the `Single` factorisation of m vectors of length n: the compensated dot products'
/// bound and the f64 LDLᵀ's backward error (γ_{m+1}, entrywise relative to ‖m_i‖‖m_j‖ by
/// Cauchy–Schwarz over the pivots), with 1 % to spare.
fn single_gram_rel_err(n: usize, m: usize) -> f64 {
    (dot2_rel_err(n) + 2.0 * (m + 1) as f64 * U) * 1.01
}

/// √x, correctly rounded (IEEE 754 square root: the same bits as `libm::sqrt`). On x86-64
/// through the SSE2 intrinsic, which the compiler knows as a square root: loops around it
/// vectorise, and a caller compiled for AVX2 gets the VEX form. libm's x86 `sqrt` is inline
/// assembly (legacy `sqrtsd`): it blocks vectorisation and, inside AVX code, stalls on every
/// call (measured: the batched search 3.8× slower).
#[inline(always)]
#[allow(unsafe_code)]
fn sqrt_vectorisable(x: f64) -> f64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{_mm_cvtsd_f64, _mm_set_sd, _mm_sqrt_pd};
        // SAFETY: the intrinsics need SSE2, which this build targets (the cfg above; it is
        // part of every x86-64 CPU); they are pure register operations with no memory access.
        unsafe { _mm_cvtsd_f64(_mm_sqrt_pd(_mm_set_sd(x))) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        libm::sqrt(x)
    }
}

/// r² = ‖a‖² − ‖c‖² and its error bound: the propagated dot-product error `err`, the error of
/// ‖a‖², and the rounding of the subtraction. Shared by the single-pair and batched paths.
#[inline(always)]
fn residual_and_bound(norm_sq: f64, cc: f64, err: f64, norm_rel_err: f64) -> (f64, f64) {
    (
        norm_sq - cc,
        err + norm_rel_err * norm_sq + 2.0 * U * (norm_sq + cc),
    )
}

/// Outcome of the residual computation of a pair.
enum Residual {
    /// Degenerate candidate or zero anchor: the volume is exactly 0.
    Zero,
    /// Cancellation left no correct digit (or an input was not finite).
    Unreliable(f64),
    Value {
        r2: f64,
        err: f64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume;

    #[test]
    fn pair_volume_matches_the_exact_path() {
        let a = [0.3f32, -1.2, 0.8, 2.0, 0.1];
        let m1 = [1.0f32, 0.5, -0.25, 0.0, 3.0];
        let m2 = [-0.7f32, 0.2, 1.5, 1.0, -0.4];
        let c = Candidate::new(&[&m1[..], &m2], 5).unwrap();
        let dot = |x: &[f32], y: &[f32]| -> f64 {
            x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum()
        };
        let p = c.pair_volume(dot(&a, &a), &[dot(&a, &m1), dot(&a, &m2)], 1e-15, 1e-15);
        let exact = volume(&[&a[..], &m1, &m2]).unwrap();
        assert!(
            (p.volume - exact).abs() <= 1e-13 * exact,
            "{p:?} vs {exact}"
        );
        assert!(p.rel_err_bound < 1e-12);
        assert!((c.volume() - volume(&[&m1[..], &m2]).unwrap()).abs() < 1e-14);
    }

    #[test]
    fn record_round_trips_bit_for_bit_and_refuses_damage() {
        let m1 = [1.0f32, 0.5, -0.25, 0.0, 3.0];
        let m2 = [-0.7f32, 0.2, 1.5, 1.0, -0.4];
        let m3 = [0.1f32, 0.9, -1.5, 2.0, 0.3];
        let a = [0.3f32, -1.2, 0.8, 2.0, 0.1];
        for vectors in [
            &[&m1[..]][..],
            &[&m1[..], &m2],
            &[&m1[..], &m2, &m3],
            &[&m1[..], &m1],
        ] {
            let c = Candidate::new(vectors, 5).unwrap();
            let mut rec = [0.0f64; Candidate::record_len(3)];
            let rec = &mut rec[..Candidate::record_len(vectors.len())];
            c.record(rec).unwrap();
            let back = Candidate::from_record(vectors.len(), 5, rec).unwrap();
            let dots: [f64; 3] = core::array::from_fn(|t| {
                vectors.get(t).map_or(0.0, |v| {
                    a.iter()
                        .zip(v.iter())
                        .map(|(x, y)| *x as f64 * *y as f64)
                        .sum()
                })
            });
            let p = |c: &Candidate| c.pair_volume(8.0, &dots[..vectors.len()], 1e-7, 1e-15);
            assert_eq!(p(&c).volume.to_bits(), p(&back).volume.to_bits());
            assert_eq!(c.volume().to_bits(), back.volume().to_bits());
            assert_eq!(c.is_degenerate(), back.is_degenerate());
            // Damage: a NaN, a repeated pivot index, flags out of range, a short record.
            let mut bad = rec.to_vec();
            bad[rec.len() - 1] = f64::NAN;
            assert_eq!(
                Candidate::from_record(vectors.len(), 5, &bad).err(),
                Some(GramError::NonFinite)
            );
            if vectors.len() > 1 && !c.is_degenerate() {
                let mut bad = rec.to_vec();
                bad[5] = bad[4];
                assert!(Candidate::from_record(vectors.len(), 5, &bad).is_err());
            }
            let mut bad = rec.to_vec();
            bad[3] = 16.0;
            assert!(Candidate::from_record(vectors.len(), 5, &bad).is_err());
            assert!(Candidate::from_record(vectors.len(), 5, &rec[1..]).is_err());
        }
    }

    #[test]
    fn orthonormal_basis_is_orthonormal_and_spans_the_candidate() {
        let m1 = [1.0f32, 0.5, -0.25, 0.0, 3.0];
        let m2 = [-0.7f32, 0.2, 1.5, 1.0, -0.4];
        let c = Candidate::new(&[&m1[..], &m2], 5).unwrap();
        let mut q = [0.0f64; 10];
        c.orthonormal_basis(&[&m1[..], &m2], &mut q).unwrap();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        assert!((dot(&q[..5], &q[..5]) - 1.0).abs() < 1e-14);
        assert!((dot(&q[5..], &q[5..]) - 1.0).abs() < 1e-14);
        assert!(dot(&q[..5], &q[5..]).abs() < 1e-14);
        // m1 lies in the span: its residual after projection is zero.
        let m1d: [f64; 5] = core::array::from_fn(|i| m1[i] as f64);
        let (c1, c2) = (dot(&q[..5], &m1d), dot(&q[5..], &m1d));
        let resid: f64 = (0..5)
            .map(|i| (m1d[i] - c1 * q[i] - c2 * q[5 + i]).powi(2))
            .sum();
        assert!(resid < 1e-24, "{resid}");
    }

    #[test]
    fn batched_pairs_equal_single_pairs() {
        let m1 = [1.0f32, 0.5, -0.25, 0.0, 3.0];
        let m2 = [-0.7f32, 0.2, 1.5, 1.0, -0.4];
        let c = Candidate::new(&[&m1[..], &m2], 5).unwrap();
        // Anchors: generic, zero, in the span (must be flagged), tiny, huge.
        let anchors: [[f32; 5]; 5] = [
            [0.3, -1.2, 0.8, 2.0, 0.1],
            [0.0; 5],
            [1.0 - 0.7, 0.5 + 0.2, -0.25 + 1.5, 1.0, 3.0 - 0.4],
            [1e-30, 0.0, 2e-30, 0.0, 0.0],
            [1e30, 3e30, 0.0, -1e30, 0.0],
        ];
        let dot = |x: &[f32], y: &[f32]| -> f64 {
            x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum()
        };
        let ns: [f64; 5] = core::array::from_fn(|i| dot(&anchors[i], &anchors[i]));
        let n: [f64; 5] = core::array::from_fn(|i| ns[i].sqrt());
        let d1: [f32; 5] = core::array::from_fn(|i| dot(&anchors[i], &m1) as f32);
        let d2: [f32; 5] = core::array::from_fn(|i| dot(&anchors[i], &m2) as f32);
        let (eta, tol) = ((1e-7, 1e-15), 1e-6);
        let mut scratch = [0.0f64; 20];
        let mut out = [0.0f64; 5];
        c.pair_volumes_within((&ns, &n), &[&d1, &d2], eta, tol, &mut scratch, &mut out);
        for i in 0..5 {
            let single = c.pair_volume_within(ns[i], n[i], &[d1[i] as f64, d2[i] as f64], eta, tol);
            match single {
                Some(v) => assert_eq!(out[i], v, "anchor {i}"),
                None => assert!(out[i].is_nan(), "anchor {i}: {}", out[i]),
            }
        }
        assert_eq!(out[1], 0.0);
        assert!(
            out[2].is_nan(),
            "the in-span anchor must go to the exact path"
        );
    }

    #[test]
    fn anchor_in_the_span_is_flagged() {
        let m1 = [1.0f32, 0.0, 0.0];
        let m2 = [0.0f32, 1.0, 0.0];
        let a = [0.6f32, 0.8, 0.0];
        let c = Candidate::new(&[&m1[..], &m2], 3).unwrap();
        let p = c.pair_volume(1.0, &[0.6, 0.8], 1e-8, 1e-8);
        assert_eq!(p.rel_err_bound, f64::INFINITY);
        assert_eq!(volume(&[&a[..], &m1, &m2]).unwrap(), 0.0);
    }

    #[test]
    fn non_finite_dots_never_give_nan() {
        let m1 = [1.0f32, 0.0, 0.0];
        let c = Candidate::new(&[&m1[..]], 3).unwrap();
        let p = c.pair_volume(1.0, &[f64::NAN], 1e-8, 1e-8);
        assert!(!p.volume.is_nan());
        assert_eq!(p.rel_err_bound, f64::INFINITY);
        let p = c.pair_volume(f64::INFINITY, &[f64::INFINITY], 1e-8, 1e-8);
        assert!(!p.volume.is_nan());
        assert_eq!(p.rel_err_bound, f64::INFINITY);
    }

    #[test]
    fn degenerate_candidates_give_exact_zero() {
        let m1 = [1.0f32, 2.0];
        let c = Candidate::new(&[&m1[..], &m1], 2).unwrap();
        assert!(c.is_degenerate());
        assert_eq!(c.pair_volume(5.0, &[1.0, 1.0], 1e-8, 1e-8).volume, 0.0);
        let c = Candidate::new(&[&m1[..], &[0.0, 1.0]], 2).unwrap(); // k = 3 > n = 2
        assert!(c.is_degenerate());
    }
}
