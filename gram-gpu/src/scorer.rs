//! Batched scoring on the GPU: volume matrices and per-anchor top-k, tiled to the device's
//! binding and dispatch limits.
//!
//! Host side (f64, gram-nostd): each candidate tuple is factored once ([`gram_nostd::Candidate`])
//! into its volume vol(M_j) and an orthonormal basis Q_j (stored as f32); each anchor into its
//! norm and unit direction. Device side (f32, `residual.wgsl`): ‖â_i − Q_jQ_jᵀâ_i‖ for every
//! pair. vol(a_i, M_j) = vol(M_j)·‖a_i‖·‖r̂_ij‖ is assembled in f64. The equilibration makes
//! the device work scale-free (no overflow or underflow at any input magnitude), and the
//! projection form keeps near-collinear pairs accurate without f64 on the device.

use crate::device::GpuContext;
use crate::error::GpuError;
use gram_nostd::{GramError, MAX_K, candidate_at, dot::dot_f64, max_abs_checked, to_f32};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ResidualParams {
    n: u32,
    m: u32,
    rows: u32,
    cols: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TopkParams {
    rows: u32,
    cols: u32,
    k: u32,
    col_offset: u32,
}

/// Largest k of [`GpuScorer::top_k`].
pub const MAX_TOP_K: usize = 128;

/// Candidates factored for the GPU.
pub struct GpuScorer<'a> {
    ctx: &'a GpuContext,
    modalities: Vec<&'a [f32]>,
    n2: usize,
    dim: usize,
    /// n2 × m × dim, orthonormal rows per candidate.
    basis: Vec<f32>,
    volume: Vec<f64>,
    /// volume / max volume: orders pairs like their volumes, in [0, 1].
    scale: Vec<f32>,
    /// Optional caps on the rows/columns of one dispatch (tests use them to force tiling).
    max_block: (usize, usize),
}

/// Unit anchors (f32) and their norms (f64); zero rows stay zero.
fn equilibrate(anchor: &[f32], dim: usize) -> (Vec<f32>, Vec<f64>) {
    let mut unit = Vec::with_capacity(anchor.len());
    let mut norms = Vec::with_capacity(anchor.len() / dim);
    for a in anchor.chunks_exact(dim) {
        // Scale before squaring so f32 extremes neither overflow nor underflow.
        let (s, _) = gram_nostd::pow2_scale(a.iter().fold(0.0f64, |m, x| m.max((*x as f64).abs())));
        let norm = dot_f64(a, s, a, s).sqrt() / s;
        let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        unit.extend(a.iter().map(|&x| (x as f64 * inv) as f32));
        norms.push(norm);
    }
    (unit, norms)
}

impl<'a> GpuScorer<'a> {
    /// `modalities[t]` is a row-major [n2, dim] matrix (1..=15 of them).
    pub fn new(
        ctx: &'a GpuContext,
        modalities: &[&'a [f32]],
        n2: usize,
        dim: usize,
    ) -> Result<GpuScorer<'a>, GpuError> {
        Self::from_candidates(ctx, modalities, n2, dim, |j| {
            candidate_at(modalities, dim, j)
        })
    }

    /// [`GpuScorer::new`] with candidate j's factor supplied by `candidate(j)` — factored
    /// earlier and stored (a search index) — so only the orthonormal bases are formed here.
    /// `candidate(j)` must be the factor of row j of `modalities`.
    pub fn from_candidates(
        ctx: &'a GpuContext,
        modalities: &[&'a [f32]],
        n2: usize,
        dim: usize,
        candidate: impl Fn(usize) -> Result<gram_nostd::Candidate, GramError>,
    ) -> Result<GpuScorer<'a>, GpuError> {
        let m = modalities.len();
        if m == 0 || n2 == 0 || dim == 0 {
            return Err(GramError::EmptyInput.into());
        }
        if m >= MAX_K {
            return Err(GramError::TooManyVectors { k: m + 1 }.into());
        }
        if let Some(bad) = modalities.iter().find(|x| x.len() != n2 * dim) {
            return Err(GramError::DimensionMismatch {
                expected: n2 * dim,
                found: bad.len(),
            }
            .into());
        }
        let mut basis = vec![0.0f32; n2 * m * dim];
        let mut volume = vec![0.0f64; n2];
        let mut q = vec![0.0f64; m * dim];
        for j in 0..n2 {
            let cand = candidate(j)?;
            let rows: Vec<&[f32]> = modalities
                .iter()
                .map(|x| &x[j * dim..(j + 1) * dim])
                .collect();
            cand.orthonormal_basis(&rows, &mut q)?;
            for (b, x) in basis[j * m * dim..(j + 1) * m * dim].iter_mut().zip(&q) {
                *b = *x as f32;
            }
            volume[j] = cand.volume();
            if !volume[j].is_finite() {
                return Err(GramError::OutOfRange.into());
            }
        }
        let max = volume.iter().cloned().fold(0.0f64, f64::max);
        let scale = volume
            .iter()
            .map(|&v| if max > 0.0 { (v / max) as f32 } else { 0.0 })
            .collect();
        Ok(GpuScorer {
            ctx,
            modalities: modalities.to_vec(),
            n2,
            dim,
            basis,
            volume,
            scale,
            max_block: (usize::MAX, usize::MAX),
        })
    }

    /// Cap the anchors and candidates of one dispatch below what the device allows, so that
    /// tiling can be exercised (and tested) on small inputs.
    pub fn with_max_block(mut self, rows: usize, cols: usize) -> Self {
        self.max_block = (rows.max(1), cols.max(1));
        self
    }

    fn m(&self) -> usize {
        self.modalities.len()
    }

    /// Rows and columns per dispatch within the device limits.
    fn blocks(&self, n1: usize) -> Result<(usize, usize), GpuError> {
        let l = &self.ctx.limits;
        let max_bytes = l.max_storage_buffer_binding_size.min(l.max_buffer_size) as usize;
        let per_cand = self.m() * self.dim * 4;
        if per_cand > max_bytes || self.dim * 4 > max_bytes {
            return Err(GpuError::TooLarge(format!(
                "vectors of length {} exceed the {max_bytes}-byte binding limit",
                self.dim
            )));
        }
        let groups = l.max_compute_workgroups_per_dimension as usize;
        let cols = self
            .n2
            .min(max_bytes / per_cand)
            .min(groups * 8)
            .min(1 << 16);
        let cols = cols.min(self.max_block.1);
        let rows = n1
            .min(max_bytes / (self.dim * 4))
            .min(max_bytes / (cols * 4))
            .min(groups * 8)
            .min(groups * 64)
            .min(1 << 14);
        Ok((
            rows.min(self.max_block.0).max(1),
            cols.min(self.max_block.1).max(1),
        ))
    }

    fn check_anchor(&self, anchor: &[f32]) -> Result<usize, GpuError> {
        if anchor.is_empty() {
            return Err(GramError::EmptyInput.into());
        }
        if !anchor.len().is_multiple_of(self.dim) {
            return Err(GramError::DimensionMismatch {
                expected: self.dim,
                found: anchor.len() % self.dim,
            }
            .into());
        }
        max_abs_checked(anchor)?;
        Ok(anchor.len() / self.dim)
    }

    /// Residual norms of `unit` rows (r anchors) against candidates c0..c0+cols, left in a GPU
    /// buffer; `basis` must hold those candidates' bases.
    fn residuals(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        unit: &wgpu::Buffer,
        r: usize,
        basis: &wgpu::Buffer,
        cols: usize,
    ) -> wgpu::Buffer {
        let ctx = self.ctx;
        let out = ctx.output("residual", (r * cols * 4) as u64);
        let params = ctx.uniform(&ResidualParams {
            n: self.dim as u32,
            m: self.m() as u32,
            rows: r as u32,
            cols: cols as u32,
        });
        let bind = ctx.bind(&ctx.residual, &[&params, unit, basis, &out]);
        ctx.dispatch(
            encoder,
            &ctx.residual,
            &bind,
            (r.div_ceil(8) as u32, cols.div_ceil(8) as u32),
        );
        out
    }

    fn basis_block(&self, c0: usize, cols: usize) -> wgpu::Buffer {
        let per = self.m() * self.dim;
        self.ctx
            .storage("basis", &self.basis[c0 * per..(c0 + cols) * per], false)
    }

    /// V[i, j] = vol(anchor_i, candidate_j), row-major [n1, n2], for a row-major [n1, dim]
    /// `anchor`. `OutOfRange` if a volume exceeds f32. Blocking; on the web use
    /// [`GpuScorer::volume_matrix_async`].
    pub fn volume_matrix(&self, anchor: &[f32]) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.volume_matrix_async(anchor))
    }

    /// [`GpuScorer::volume_matrix`] as a future (what a browser must use).
    pub async fn volume_matrix_async(&self, anchor: &[f32]) -> Result<Vec<f32>, GpuError> {
        let n1 = self.check_anchor(anchor)?;
        let (unit, norms) = equilibrate(anchor, self.dim);
        let (rb, cb) = self.blocks(n1)?;
        let mut out = vec![0.0f32; n1 * self.n2];
        for c0 in (0..self.n2).step_by(cb) {
            let cols = cb.min(self.n2 - c0);
            let basis = self.basis_block(c0, cols);
            for r0 in (0..n1).step_by(rb) {
                let r = rb.min(n1 - r0);
                let unit_buf =
                    self.ctx
                        .storage("anchors", &unit[r0 * self.dim..(r0 + r) * self.dim], false);
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                let res_buf = self.residuals(&mut encoder, &unit_buf, r, &basis, cols);
                self.ctx.queue.submit([encoder.finish()]);
                let res: Vec<f32> = self.ctx.read(&res_buf, r * cols).await?;
                for i in 0..r {
                    for jj in 0..cols {
                        let v = self.volume[c0 + jj] * norms[r0 + i] * res[i * cols + jj] as f64;
                        out[(r0 + i) * self.n2 + c0 + jj] = to_f32(v)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// For every anchor, the `k` candidates of smallest volume (ties: smaller index first) as
    /// (index, volume), ascending. Candidates stream through the GPU block by block; only
    /// n1 × k results come back. Returned volumes are recomputed on gram-nostd's exact path.
    /// Blocking; on the web use [`GpuScorer::top_k_async`].
    pub fn top_k(&self, anchor: &[f32], k: usize) -> Result<Vec<Vec<(u32, f32)>>, GpuError> {
        pollster::block_on(self.top_k_async(anchor, k))
    }

    /// [`GpuScorer::top_k`] as a future.
    pub async fn top_k_async(
        &self,
        anchor: &[f32],
        k: usize,
    ) -> Result<Vec<Vec<(u32, f32)>>, GpuError> {
        let n1 = self.check_anchor(anchor)?;
        if k == 0 || k > MAX_TOP_K || k > self.n2 {
            return Err(GramError::InvalidParameter.into());
        }
        let (unit, _) = equilibrate(anchor, self.dim);
        let (rb, cb) = self.blocks(n1)?;
        let mut result = Vec::with_capacity(n1);
        for r0 in (0..n1).step_by(rb) {
            let r = rb.min(n1 - r0);
            let ctx = self.ctx;
            let unit_buf = ctx.storage("anchors", &unit[r0 * self.dim..(r0 + r) * self.dim], false);
            let best_key = ctx.storage("best_key", &vec![f32::INFINITY; r * k], true);
            let best_idx = ctx.storage("best_idx", &vec![u32::MAX; r * k], true);
            for c0 in (0..self.n2).step_by(cb) {
                let cols = cb.min(self.n2 - c0);
                let basis = self.basis_block(c0, cols);
                let scale = ctx.storage("scale", &self.scale[c0..c0 + cols], false);
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                let res = self.residuals(&mut encoder, &unit_buf, r, &basis, cols);
                let params = ctx.uniform(&TopkParams {
                    rows: r as u32,
                    cols: cols as u32,
                    k: k as u32,
                    col_offset: c0 as u32,
                });
                let bind = ctx.bind(&ctx.topk, &[&params, &res, &scale, &best_key, &best_idx]);
                ctx.dispatch(&mut encoder, &ctx.topk, &bind, (r.div_ceil(64) as u32, 1));
                ctx.queue.submit([encoder.finish()]);
            }
            let idx: Vec<u32> = ctx.read(&best_idx, r * k).await?;
            for i in 0..r {
                let a = &anchor[(r0 + i) * self.dim..(r0 + i + 1) * self.dim];
                let mut row = Vec::with_capacity(k);
                for &j in &idx[i * k..(i + 1) * k] {
                    let mut t: Vec<&[f32]> = vec![a];
                    t.extend(
                        self.modalities
                            .iter()
                            .map(|x| &x[j as usize * self.dim..(j as usize + 1) * self.dim]),
                    );
                    row.push((j, to_f32(gram_nostd::volume(&t)?)?));
                }
                result.push(row);
            }
        }
        Ok(result)
    }
}

/// One-shot [`GpuScorer::volume_matrix`] on the default adapter.
pub fn volume_matrix(
    anchor: &[f32],
    modalities: &[&[f32]],
    dim: usize,
) -> Result<Vec<f32>, GpuError> {
    let ctx = GpuContext::new()?;
    let n2 = modalities.first().map_or(0, |m| m.len() / dim.max(1));
    GpuScorer::new(&ctx, modalities, n2, dim)?.volume_matrix(anchor)
}

/// One-shot [`GpuScorer::top_k`] on the default adapter.
pub fn top_k(
    anchor: &[f32],
    modalities: &[&[f32]],
    dim: usize,
    k: usize,
) -> Result<Vec<Vec<(u32, f32)>>, GpuError> {
    let ctx = GpuContext::new()?;
    let n2 = modalities.first().map_or(0, |m| m.len() / dim.max(1));
    GpuScorer::new(&ctx, modalities, n2, dim)?.top_k(anchor, k)
}
