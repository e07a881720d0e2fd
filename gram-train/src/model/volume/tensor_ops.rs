//! The volume matrix as Candle tensor operations, for any device.
//!
//! With â = a/‖a‖ and m̂_t = m_t/‖m_t‖ (unit rows), Ĝ_M = M̂ᵀM̂ the candidate's (k−1)×(k−1) Gram
//! matrix with Cholesky factor L, and p = L⁻¹ M̂ᵀâ (forward substitution),
//!
//! ```text
//! vol(a, M) = ‖a‖ · Π_t ‖m_t‖ · Π_c L_cc · sqrt(‖â‖² − ‖p‖²)
//! ```
//!
//! (det Ĝ = det Ĝ_M · (1 − ‖p‖²) by the Schur complement). Per candidate j the factor is a
//! handful of B2-long vectors; per pair (i, j) it is k−1 GEMM entries, a forward substitution
//! and one square root, as element-wise ops on [B1, B2] tensors. Everything after the cast of
//! the inputs is f64 (GEMMs included), so the Gram matrix the published recipe squares into
//! uselessness keeps ~1e-16 of its unit diagonal: on the reference vectors the result is within
//! 1e-10 of gram-nostd on random tuples and 1e-6 at normalised volume 1e-4 (tests).
//!
//! Singular to working precision — a pivot d_c or the anchor's residual ‖â‖² − ‖p‖² at most
//! k·2^-52 (gram-nostd's `GramFactor` threshold), or a zero row — gives vol = 0 exactly and the
//! subgradient 0: every square root and division sees a safe stand-in there (`where_cond`),
//! so no infinity meets a zero in the backward pass. NaN inputs give NaN volumes (they are not
//! masked away). Row norms must fit f64's squares (below ~1e154): always true for f32 inputs.
//!
//! Why not one fused CUDA kernel: this form runs (and is tested) on the CPU in CI, uses
//! Candle's autograd for the backward, and costs ~20 element-wise passes over B1·B2 numbers —
//! cheap on a GPU. On the CPU those passes were most of the training step's backward, so there
//! the per-pair stage runs as one op (`Stage::CpuOp`, `super::pairs_cpu`) and the rest stays
//! as written here.

use candle_core::{D, DType, Result, Tensor};

/// Rows of `x` [B, D] (f64) as (norm [B], unit rows [B, D], zero-row mask [B]); a zero row's
/// norm is reported as 1 (with the mask set) so later divisions stay finite.
fn unit_rows(x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let sq = x.sqr()?.sum(D::Minus1)?;
    let zero = sq.le(0.0)?;
    let norm = zero.where_cond(&sq.ones_like()?, &sq)?.sqrt()?;
    let unit = x.broadcast_div(&norm.unsqueeze(1)?)?;
    Ok((norm, unit, zero))
}

/// Cholesky factor of each candidate's unit-row Gram matrix: (L [c][q] for q < c as B2-vectors,
/// 1/L_cc, Π L_cc with 0 where a pivot is at most `tol`).
struct CandidateFactor {
    lower: Vec<Vec<Tensor>>,
    inv_diag: Vec<Tensor>,
    det_sqrt: Tensor,
}

impl CandidateFactor {
    fn new(units: &[Tensor], tol: f64) -> Result<CandidateFactor> {
        let m = units.len();
        let mut lower: Vec<Vec<Tensor>> = Vec::with_capacity(m);
        let mut inv_diag: Vec<Tensor> = Vec::with_capacity(m);
        let mut det_sqrt: Option<Tensor> = None;
        for c in 0..m {
            let mut row = Vec::with_capacity(c);
            for q in 0..c {
                // L_cq = (Ĝ_cq − Σ_{p<q} L_cp L_qp) / L_qq
                let mut s = (&units[c] * &units[q])?.sum(D::Minus1)?;
                for p in 0..q {
                    s = (s - (&row[p] * &lower[q][p])?)?;
                }
                row.push((s * &inv_diag[q])?);
            }
            let mut d = units[c].sqr()?.sum(D::Minus1)?;
            for l in &row {
                d = (d - l.sqr()?)?;
            }
            let singular = d.le(tol)?;
            let diag = singular.where_cond(&d.ones_like()?, &d)?.sqrt()?;
            let kept = singular.where_cond(&d.zeros_like()?, &diag)?;
            det_sqrt = Some(match det_sqrt {
                None => kept,
                Some(p) => (p * kept)?,
            });
            inv_diag.push(diag.recip()?);
            lower.push(row);
        }
        Ok(CandidateFactor {
            lower,
            inv_diag,
            det_sqrt: det_sqrt.expect("at least one modality"),
        })
    }

    /// The factor packed as [`super::pairs_cpu`] takes it: [m(m+1)/2, B2], for each c the
    /// rows L_c0 … L_c(c−1), then 1/L_cc.
    fn packed(&self) -> Result<Tensor> {
        let mut rows = Vec::new();
        for (lower, inv) in self.lower.iter().zip(&self.inv_diag) {
            rows.extend(lower.iter().cloned());
            rows.push(inv.clone());
        }
        Tensor::stack(&rows, 0)
    }
}

/// How the per-pair stage (forward substitution and square root over [B1, B2]) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// Candle ops on any device.
    Ops,
    /// One CPU op with a hand-written backward ([`super::pairs_cpu`]).
    CpuOp,
}

/// See the module documentation. `anchor` [B1, D], each modality [B2, D], any float dtype.
pub fn volume_matrix(anchor: &Tensor, modalities: &[Tensor]) -> Result<Tensor> {
    volume_matrix_staged(anchor, modalities, Stage::Ops)
}

/// [`volume_matrix`] with the per-pair stage run by `stage`.
pub(super) fn volume_matrix_staged(
    anchor: &Tensor,
    modalities: &[Tensor],
    stage: Stage,
) -> Result<Tensor> {
    let out_dtype = match anchor.dtype() {
        DType::F64 => DType::F64,
        _ => DType::F32,
    };
    let k = modalities.len() + 1;
    let tol = k as f64 * f64::EPSILON;
    let (a_norm, a_unit, a_zero) = unit_rows(&anchor.to_dtype(DType::F64)?)?;
    let mut m_units = Vec::with_capacity(k - 1);
    let mut cand_scale = None;
    for m in modalities {
        let (norm, unit, zero) = unit_rows(&m.to_dtype(DType::F64)?)?;
        let norm = zero.where_cond(&norm.zeros_like()?, &norm)?;
        cand_scale = Some(match cand_scale {
            None => norm,
            Some(s) => (s * norm)?,
        });
        m_units.push(unit);
    }
    let factor = CandidateFactor::new(&m_units, tol)?;
    // Per candidate: ‖m_1‖ … ‖m_{k−1}‖ · sqrt(det Ĝ_M) (0 for a zero or dependent candidate).
    let cand_scale = (cand_scale.expect("at least one modality") * &factor.det_sqrt)?;
    let a_scale = a_zero.where_cond(&a_norm.zeros_like()?, &a_norm)?;
    let cross: Vec<Tensor> = m_units
        .iter()
        .map(|unit| a_unit.matmul(&unit.t()?))
        .collect::<Result<_>>()?;
    let asq = a_unit.sqr()?.sum(D::Minus1)?;
    let vol = match stage {
        Stage::Ops => pair_roots(&cross, &factor, &asq, tol)?
            .broadcast_mul(&a_scale.unsqueeze(1)?)?
            .broadcast_mul(&cand_scale.unsqueeze(0)?)?,
        Stage::CpuOp => super::pairs_cpu::pair_volumes(
            &Tensor::stack(&cross, 1)?,
            &Tensor::cat(&[factor.packed()?, cand_scale.unsqueeze(0)?], 0)?,
            &Tensor::stack(&[asq, a_scale], 0)?,
            tol,
        )?,
    };
    vol.to_dtype(out_dtype)
}

/// The per-pair stage as Candle ops: p = L⁻¹ s by forward substitution from the cross dot
/// products s_c = â·m̂_c ([B1, B2] each), then sqrt(‖â‖² − ‖p‖²), 0 (with gradient 0) where
/// that residual is at most `tol`.
fn pair_roots(
    cross: &[Tensor],
    factor: &CandidateFactor,
    asq: &Tensor,
    tol: f64,
) -> Result<Tensor> {
    let mut p: Vec<Tensor> = Vec::with_capacity(cross.len());
    for (c, s) in cross.iter().enumerate() {
        let mut s = s.clone();
        for (q, pq) in p.iter().enumerate() {
            s = (s - pq.broadcast_mul(&factor.lower[c][q].unsqueeze(0)?)?)?;
        }
        p.push(s.broadcast_mul(&factor.inv_diag[c].unsqueeze(0)?)?);
    }
    let mut residual = asq.unsqueeze(1)?.broadcast_as(p[0].shape())?;
    for pc in &p {
        residual = (residual - pc.sqr()?)?;
    }
    let singular = residual.le(tol)?;
    let root = singular
        .where_cond(&residual.ones_like()?, &residual)?
        .sqrt()?;
    singular.where_cond(&root.zeros_like()?, &root)
}
