//! Host-side preparation for the fused kernel: anchors scaled by powers of two, candidates'
//! orthonormal bases and per-candidate constants, zero padding to whole tiles, and the error
//! model the kernel's bound uses.

use crate::kernel::K_STEP;
use gram_nostd::{Candidate, GramError, dot::dot_f64, pow2_scale};

/// Relative tolerance of the GPU's fast path: a pair whose a-posteriori bound exceeds it is
/// recomputed on the host in f64 (and exactly if needed). Set so that every volume gram-gpu
/// returns is within 1e-6 of the exact one, relative.
pub const GPU_TOLERANCE: f64 = 1e-6;

/// f32's unit roundoff, 2^-24.
const U32: f64 = f32::EPSILON as f64 / 2.0;

/// D rounded up to whole K-steps (the padding the kernel's loop needs).
pub fn padded_dim(dim: usize) -> usize {
    dim.div_ceil(K_STEP) * K_STEP
}

/// Error of one of the kernel's cross dots relative to ‖a‖‖q‖, for D padded to `d_pad`: by
/// the probabilistic rounding model of Higham & Mary (2019) with λ = 6 — the model gram-host's
/// CPU GEMM path uses, (6√n + 2)·u for a product that passes through n additions. The model
/// bounds each product's accumulated relative error by the number of roundings on its own path
/// through the summation tree, so n is that path's length: 3 inside a vec4 `dot`, then one per
/// vec4 of D in the direct loop (d_pad/4) — or, in the staged loop, which sums 16 floats
/// apart before adding them in, 4 within the block and one per block (d_pad/16). At D = 512:
/// 4.2e-6 direct, 2.4e-6 staged, where one f32 sum over D would give 8.2e-6.
pub fn kernel_dot_rel_err(d_pad: usize, staged: bool) -> f64 {
    let adds = if staged {
        3 + 4 + d_pad / K_STEP
    } else {
        3 + d_pad / 4
    };
    (6.0 * (adds as f64).sqrt() + 2.0) * U32
}

/// Error of a refinement-pass cross dot (`shaders/refine.wgsl`: f64 sum, rounded to f32)
/// relative to ‖a‖‖q‖: u for the rounding to f32 (|c| ≤ ‖a‖‖q‖) plus the f64 sum's worst case,
/// (d_pad + 4)·2^-53, with a 1 % margin. 1.01·2^-24 at D = 512.
pub fn refine_dot_rel_err(d_pad: usize) -> f64 {
    (U32 + (d_pad + 4) as f64 * f64::EPSILON / 2.0) * 1.01
}

/// The kernel's relative tolerance: [`GPU_TOLERANCE`] less the roundings after r² (the square
/// root, vol(M) to f32, two products, the f32 output).
pub fn kernel_tolerance() -> f32 {
    (GPU_TOLERANCE - 6.0 * U32) as f32
}

/// Anchors as the kernel reads them: each row scaled by a power of two (exact) so its largest
/// element is in [1, 2) and no product or sum over- or underflows, D zero-padded.
pub struct Anchors {
    /// n × d_pad scaled rows.
    pub scaled: Vec<f32>,
    /// (‖a'‖², 2^-e) per row, as the kernel's `anchor_info`.
    pub info: Vec<[f32; 2]>,
    /// ‖a‖² of the original row in f64, for the host's recomputation.
    pub norm_sq: Vec<f64>,
}

impl Anchors {
    /// `anchor` is row-major [n, dim] and already checked to be finite.
    pub fn new(anchor: &[f32], dim: usize) -> Anchors {
        let d_pad = padded_dim(dim);
        let n = anchor.len() / dim;
        let mut scaled = vec![0.0f32; n * d_pad];
        let mut info = Vec::with_capacity(n);
        let mut norm_sq = Vec::with_capacity(n);
        for (a, out) in anchor.chunks_exact(dim).zip(scaled.chunks_exact_mut(d_pad)) {
            let max = a.iter().fold(0.0f64, |m, x| m.max((*x as f64).abs()));
            let (s, e) = pow2_scale(max);
            for (o, &x) in out.iter_mut().zip(a) {
                *o = (x as f64 * s) as f32;
            }
            let na2 = dot_f64(&out[..dim], 1.0, &out[..dim], 1.0);
            // 2^e in f32: 0 or inf beyond f32's range, which the kernel sends to the host.
            let inv = pow2_f32(e);
            info.push([na2 as f32, inv]);
            norm_sq.push(dot_f64(a, 1.0, a, 1.0));
        }
        Anchors {
            scaled,
            info,
            norm_sq,
        }
    }
}

fn pow2_f32(e: i32) -> f32 {
    (2.0f64).powi(e) as f32
}

/// Candidates as the kernel reads them, plus the factors the host recomputes from.
pub struct Candidates {
    pub m: usize,
    /// n2·m × d_pad: candidate j's orthonormal basis in rows j·m .. j·m + m (f32).
    pub basis: Vec<f32>,
    /// (vol(M_j) in f32, η_j) per candidate, as the kernel's `cand_info` (η_j: the error of a
    /// cross dot relative to ‖a‖ from Q_j itself; the kernel adds its own): vol(M_j) = 0 for a
    /// degenerate candidate (every pair volume 0), NaN when the fast path cannot be used
    /// (no f64 factor, or vol(M_j) outside f32's normal range).
    pub info: Vec<[f32; 2]>,
    /// gram-nostd's record of each candidate ([`Candidate::record`]), n2 × record_len(m).
    pub records: Vec<f64>,
}

impl Candidates {
    /// Factors candidates 0..n2 with `candidate(j)` and forms their bases from `modalities`.
    pub fn new(
        modalities: &[&[f32]],
        n2: usize,
        dim: usize,
        candidate: impl Fn(usize) -> Result<Candidate, GramError>,
    ) -> Result<Candidates, GramError> {
        let m = modalities.len();
        let d_pad = padded_dim(dim);
        let rec_len = Candidate::record_len(m);
        let mut basis = vec![0.0f32; n2 * m * d_pad];
        let mut info = Vec::with_capacity(n2);
        let mut records = vec![0.0f64; n2 * rec_len];
        let mut q = vec![0.0f64; m * dim];
        // The kernel's own dot error is added on the device (`Params::eta`, per main loop).
        let eta_kernel = kernel_dot_rel_err(d_pad, false);
        for j in 0..n2 {
            let cand = candidate(j)?;
            let rec = &mut records[j * rec_len..(j + 1) * rec_len];
            cand.record(rec)?;
            let rows: Vec<&[f32]> = modalities
                .iter()
                .map(|x| &x[j * dim..(j + 1) * dim])
                .collect();
            cand.orthonormal_basis(&rows, &mut q)?;
            for (t, qt) in q.chunks_exact(dim).enumerate() {
                let dst = &mut basis[(j * m + t) * d_pad..][..dim];
                for (b, x) in dst.iter_mut().zip(qt) {
                    *b = *x as f32;
                }
            }
            let volume = cand.volume();
            if !volume.is_finite() {
                return Err(GramError::OutOfRange);
            }
            let fast_path = rec[3] as u8 & 2 != 0;
            // Q's own error in f64: ≤ (m+2)·2^-53·wn_t per row (gram-nostd's W and its sum).
            let wn_max = rec[4 + m..4 + 2 * m].iter().fold(0.0f64, |a, &w| a.max(w));
            // Q's rounding to f32 (one u) and its own error in f64.
            let eta_j = U32 + (m + 2) as f64 * f64::EPSILON / 2.0 * wn_max;
            let vol32 = volume as f32;
            let vol_m = if cand.is_degenerate() {
                0.0
            } else if fast_path && vol32.is_normal() && eta_j + eta_kernel < 1e-3 {
                vol32
            } else {
                f32::NAN
            };
            // Rounded up so the f32 bound is never below the f64 one.
            info.push([vol_m, (eta_j * (1.0 + 1e-6)) as f32]);
        }
        Ok(Candidates {
            m,
            basis,
            info,
            records,
        })
    }

    pub fn candidate(&self, j: usize, dim: usize) -> Result<Candidate, GramError> {
        let len = Candidate::record_len(self.m);
        Candidate::from_record(self.m, dim, &self.records[j * len..(j + 1) * len])
    }
}

/// `rows` consecutive rows of `row_len` values starting at row `start` of `src`, zero-padded
/// to `rows_pad` rows.
pub fn padded_rows<T: bytemuck::Pod + Default>(
    src: &[T],
    row_len: usize,
    start: usize,
    rows: usize,
    rows_pad: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); rows_pad * row_len];
    out[..rows * row_len].copy_from_slice(&src[start * row_len..(start + rows) * row_len]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_scaled_exactly_by_powers_of_two() {
        let a = [3.0e-20f32, -1.5e-20, 0.0, 7.0e-21, 1e30, 2.0, -4.0, 0.5];
        let p = Anchors::new(&a, 4);
        let d_pad = padded_dim(4);
        for (r, row) in a.chunks(4).enumerate() {
            let inv = p.info[r][1] as f64;
            for (l, &x) in row.iter().enumerate() {
                assert_eq!(p.scaled[r * d_pad + l] as f64 * inv, x as f64);
            }
            let max = p.scaled[r * d_pad..(r + 1) * d_pad]
                .iter()
                .fold(0.0f32, |m, x| m.max(x.abs()));
            assert!((1.0..2.0).contains(&max));
        }
    }

    #[test]
    fn dot_error_model_is_tighter_than_one_long_sum() {
        let long = (6.0 * 512f64.sqrt() + 2.0) * U32;
        assert!(kernel_dot_rel_err(512, false) < 0.55 * long);
        assert!(kernel_dot_rel_err(512, true) < 0.3 * long);
        assert!(kernel_dot_rel_err(16, false) < kernel_dot_rel_err(4096, false));
        assert!(refine_dot_rel_err(512) < 1.02 * U32);
    }
}
