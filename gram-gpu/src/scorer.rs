//! Batched scoring on the GPU: volume matrices and per-anchor top-k, tiled to the device's
//! binding and dispatch limits.
//!
//! Host side (f64, gram-nostd, prepare.rs): each candidate tuple is factored once into vol(M_j)
//! and an orthonormal basis Q_j (f32 on the device); each anchor is scaled by a power of two.
//! Device side (the fused kernel, kernel.rs): the cross dots Q_jᵀa as a register-tiled GEMM and,
//! in the same kernel, each pair's volume with its error bound. Pairs whose bound exceeds
//! [`GPU_TOLERANCE`] — anchors nearly in the candidates' span, the rare well-aligned pairs — come
//! back flagged (a compact list) and are recomputed on the host with f64 dots, and exactly
//! where needed: the same structure and contract as gram-host's CPU backend.

use crate::device::GpuContext;
use crate::error::GpuError;
use crate::kernel::{KernelVariant, Specialisation};
use crate::prepare::{
    Anchors, Candidates, kernel_tolerance, padded_dim, padded_rows, refine_dot_rel_err,
};
pub use crate::prepare::{GPU_TOLERANCE, kernel_dot_rel_err};
use gram_nostd::{GramError, MAX_K, candidate_at, max_abs_checked, score_pair, to_f32};
use std::sync::atomic::{AtomicUsize, Ordering};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct VolumeParams {
    d4: u32,
    rows: u32,
    cols: u32,
    cap: u32,
    col0: u32,
    tol: f32,
    bounds: u32,
    eta: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RefineParams {
    d4: u32,
    rows: u32,
    cols: u32,
    bounds: u32,
    tol: f32,
    eta: f32,
    pad: [u32; 2],
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

/// Candidates the device keeps per anchor beyond the k asked for. A pair whose bound failed is
/// ranked there by a lower bound on its volume (within ~1e-5 of it, less where it is nearly
/// collinear); the slack lets such pairs move down once recomputed without the selection having
/// to be repeated. A row where more than this many move past the k-th is scored on the host.
const TOP_K_SLACK: usize = 8;

/// Candidates factored for the GPU.
pub struct GpuScorer<'a> {
    ctx: &'a GpuContext,
    modalities: Vec<&'a [f32]>,
    n2: usize,
    dim: usize,
    cands: Candidates,
    /// Optional caps on the rows/columns of one dispatch (tests use them to force tiling).
    max_block: (usize, usize),
    /// Optional cap on the flagged list (tests use it to force the overflow path).
    max_flagged: usize,
    /// Kernel variant forced by the caller, else the adapter's own.
    variant: Option<KernelVariant>,
    /// Entries kept per anchor beyond k in top-k (default [`TOP_K_SLACK`]).
    top_k_slack: usize,
    /// Top-k rows the device's selection could not vouch for, scored on the host (a count for
    /// benchmarks and tests).
    host_rows: AtomicUsize,
    /// Volume-matrix pairs recomputed on the host (a count for benchmarks and tests).
    host_pairs: AtomicUsize,
    /// Whether failed pairs go through the device's refinement pass first (default: on GPUs
    /// with f64; not on CPU-type adapters, where the host's f64 is faster than the pass).
    refine: Option<bool>,
}

/// One anchor block on the device: its padded rows and per-row constants.
struct AnchorBlock {
    r0: usize,
    rows: usize,
    scaled: wgpu::Buffer,
    info: wgpu::Buffer,
}

/// One candidate block on the device.
struct CandBlock {
    c0: usize,
    cols: usize,
    basis: wgpu::Buffer,
    info: wgpu::Buffer,
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
        Ok(GpuScorer {
            ctx,
            modalities: modalities.to_vec(),
            n2,
            dim,
            cands: Candidates::new(modalities, n2, dim, candidate)?,
            max_block: (usize::MAX, usize::MAX),
            max_flagged: usize::MAX,
            variant: None,
            top_k_slack: TOP_K_SLACK,
            host_rows: AtomicUsize::new(0),
            host_pairs: AtomicUsize::new(0),
            refine: None,
        })
    }

    /// Cap the anchors and candidates of one dispatch below what the device allows, so that
    /// tiling can be exercised (and tested) on small inputs.
    pub fn with_max_block(mut self, rows: usize, cols: usize) -> Self {
        self.max_block = (rows.max(1), cols.max(1));
        self
    }

    /// Cap the flagged-pair list of one dispatch (default: sized to the block), so that the
    /// path taken when more pairs are flagged than it holds can be exercised.
    pub fn with_max_flagged(mut self, pairs: usize) -> Self {
        self.max_flagged = pairs;
        self
    }

    /// Keep `slack` candidates per anchor beyond k in [`GpuScorer::top_k`] (default 8), so
    /// that the path taken when the device's selection cannot be trusted can be exercised.
    pub fn with_top_k_slack(mut self, slack: usize) -> Self {
        self.top_k_slack = slack;
        self
    }

    /// How many top-k rows so far the device's selection could not vouch for, so that the
    /// host scored them whole (see [`GpuScorer::top_k`]).
    pub fn host_rows_scored(&self) -> usize {
        self.host_rows.load(Ordering::Relaxed)
    }

    /// Send failed pairs through the device's refinement pass first (`true`; only where the
    /// adapter has f64) or straight to the host (`false`), whatever the adapter type, so that
    /// both paths can be tested anywhere.
    pub fn with_refinement(mut self, refine: bool) -> Self {
        self.refine = Some(refine);
        self
    }

    /// How many volume-matrix pairs so far were recomputed on the host.
    pub fn host_pairs_scored(&self) -> usize {
        self.host_pairs.load(Ordering::Relaxed)
    }

    /// Whether failed pairs are refined on the device: asked for (or the adapter is a GPU) and
    /// the adapter has f64.
    fn refines(&self) -> bool {
        self.refine.unwrap_or(!self.ctx.cpu_type()) && self.ctx.has_f64()
    }

    /// Record the refinement pass over block `out` (a × c): pairs marked failed (sign bit) get
    /// f64 dots and the bound again; those that pass get their volume, the rest are marked
    /// −1 (with `bounds`: their refined lower bound, sign bit set). The kernel before it must
    /// have run in its `bounds` mode (no list).
    fn dispatch_refine(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        a: &AnchorBlock,
        c: &CandBlock,
        out: &wgpu::Buffer,
        bounds: bool,
    ) {
        let ctx = self.ctx;
        let d_pad = padded_dim(self.dim);
        let params = ctx.uniform(&RefineParams {
            d4: (d_pad / 4) as u32,
            rows: a.rows as u32,
            cols: c.cols as u32,
            bounds: u32::from(bounds),
            tol: kernel_tolerance(),
            eta: (refine_dot_rel_err(d_pad) * (1.0 + 1e-6)) as f32,
            pad: [0; 2],
        });
        let pipeline = ctx.refine_pipeline(self.m());
        let bind = ctx.bind(
            &pipeline,
            &[&params, &a.scaled, &c.basis, &a.info, &c.info, out],
        );
        let groups = (c.cols.div_ceil(64) as u32, a.rows as u32);
        ctx.dispatch(encoder, &pipeline, &bind, groups);
    }

    /// Run the given main loop whatever the adapter, so that each can be tested anywhere. The
    /// staged one still needs its tiles to fit the adapter's workgroup memory; the subgroup one
    /// is the plain direct one where the adapter has no fixed-size subgroups.
    pub fn with_kernel_variant(mut self, variant: KernelVariant) -> Self {
        self.variant = Some(variant);
        self
    }

    fn m(&self) -> usize {
        self.modalities.len()
    }

    fn spec(&self, raw: bool) -> Specialisation {
        self.ctx.specialisation(self.m(), raw, self.variant)
    }

    /// Rows and columns per dispatch within the device limits, whole workgroup tiles.
    fn blocks(&self, n1: usize, spec: &Specialisation) -> Result<(usize, usize), GpuError> {
        let l = &self.ctx.limits;
        let max_bytes = l.max_storage_buffer_binding_size.min(l.max_buffer_size) as usize;
        let row_bytes = padded_dim(self.dim) * 4;
        let (tr, tc) = (spec.tile_rows(), spec.tile_cols());
        let per_tile_c = tc * self.m() * row_bytes;
        if per_tile_c > max_bytes || tr * row_bytes > max_bytes {
            return Err(GpuError::TooLarge(format!(
                "vectors of length {} exceed the {max_bytes}-byte binding limit",
                self.dim
            )));
        }
        let groups = l.max_compute_workgroups_per_dimension as usize;
        let whole = |n: usize, t: usize| (n / t).max(1) * t;
        let cols = self
            .n2
            .min(max_bytes / per_tile_c * tc)
            .min(groups * tc)
            .min(1 << 16)
            .min(self.max_block.1);
        let out_per_row = cols * 4 * if spec.raw { self.m() } else { 1 };
        let rows = n1
            .min(max_bytes / (tr * row_bytes) * tr)
            .min(max_bytes / out_per_row)
            .min(groups * tr)
            .min(1 << 14)
            .min(self.max_block.0);
        let cols = if cols < self.n2 {
            whole(cols, tc)
        } else {
            cols
        };
        let rows = if rows < n1 { whole(rows, tr) } else { rows };
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

    fn anchor_blocks(
        &self,
        a: &Anchors,
        n1: usize,
        rb: usize,
        spec: &Specialisation,
    ) -> Vec<AnchorBlock> {
        let d_pad = padded_dim(self.dim);
        (0..n1)
            .step_by(rb)
            .map(|r0| {
                let rows = rb.min(n1 - r0);
                let pad = rows.div_ceil(spec.tile_rows()) * spec.tile_rows();
                AnchorBlock {
                    r0,
                    rows,
                    scaled: self.ctx.storage(
                        "anchors",
                        &padded_rows(&a.scaled, d_pad, r0, rows, pad),
                        false,
                    ),
                    info: self.ctx.storage(
                        "anchor_info",
                        &padded_rows(&a.info, 1, r0, rows, pad),
                        false,
                    ),
                }
            })
            .collect()
    }

    fn cand_block(&self, c0: usize, cols: usize, spec: &Specialisation) -> CandBlock {
        let (m, d_pad) = (self.m(), padded_dim(self.dim));
        let pad = cols.div_ceil(spec.tile_cols()) * spec.tile_cols();
        let basis = padded_rows(&self.cands.basis, m * d_pad, c0, cols, pad);
        CandBlock {
            c0,
            cols,
            basis: self.ctx.storage("basis", &basis, false),
            info: self.ctx.storage(
                "cand_info",
                &padded_rows(&self.cands.info, 1, c0, cols, pad),
                false,
            ),
        }
    }

    /// Capacity of a flagged list for `pairs` pairs: 1/32 of them (at least 1024), within
    /// one binding.
    fn flag_capacity(&self, pairs: usize) -> usize {
        let l = &self.ctx.limits;
        let max_bytes = l.max_storage_buffer_binding_size.min(l.max_buffer_size) as usize;
        (pairs / 32)
            .max(1024)
            .min(max_bytes / 8 - 1)
            .min(self.max_flagged)
    }

    /// Record the fused kernel over one anchor block × candidate block; returns its output
    /// (rows × cols volumes; or the cross dots for the reference GEMM). With `list` = (buffer,
    /// capacity), pairs whose bound fails are written as −1 and listed there; without, they
    /// are written as their lower bound with the sign bit set (what top-k ranks by).
    fn dispatch_volume(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        spec: &Specialisation,
        a: &AnchorBlock,
        c: &CandBlock,
        list: Option<(&wgpu::Buffer, usize)>,
    ) -> wgpu::Buffer {
        let ctx = self.ctx;
        let width = if spec.raw { self.m() } else { 1 };
        let out = ctx.output("volumes", (a.rows * c.cols * width * 4) as u64);
        let unused;
        let (flagged, cap) = match list {
            Some(l) => l,
            None => {
                unused = ctx.output("flagged", 12);
                (&unused, 0)
            }
        };
        let params = ctx.uniform(&VolumeParams {
            d4: (padded_dim(self.dim) / 4) as u32,
            rows: a.rows as u32,
            cols: c.cols as u32,
            cap: cap as u32,
            col0: c.c0 as u32,
            tol: kernel_tolerance(),
            bounds: u32::from(list.is_none()),
            // Rounded up so the f32 bound is never below the f64 one.
            eta: (kernel_dot_rel_err(padded_dim(self.dim), spec.staged) * (1.0 + 1e-6)) as f32,
        });
        let bind = ctx.volume_bind(&[
            &params, &a.scaled, &c.basis, &a.info, &c.info, &out, flagged,
        ]);
        let groups = (
            c.cols.div_ceil(spec.tile_cols()) as u32,
            a.rows.div_ceil(spec.tile_rows()) as u32,
        );
        ctx.dispatch(encoder, &ctx.volume_pipeline(spec), &bind, groups);
        out
    }

    /// The volume of anchor row `i` (global) with candidate `j` on the host: f64 dots and the
    /// candidate's fast path, or the exact path (gram-nostd's `score_pair`).
    fn host_pair(&self, anchor: &[f32], norm_sq: f64, i: usize, j: usize) -> Result<f32, GpuError> {
        let d = self.dim;
        let mut rows: [&[f32]; MAX_K] = [&anchor[i * d..(i + 1) * d]; MAX_K];
        for (t, x) in self.modalities.iter().enumerate() {
            rows[t + 1] = &x[j * d..(j + 1) * d];
        }
        let cand = self.cands.candidate(j, d)?;
        let (v, _) = score_pair(&rows[..self.m() + 1], norm_sq, &cand)?;
        Ok(to_f32(v)?)
    }

    /// [`GpuScorer::host_pair`] for (row in the block starting at anchor `r0`, candidate)
    /// pairs, on every core where there are threads.
    fn host_pairs(
        &self,
        anchor: &[f32],
        norm_sq: &[f64],
        r0: usize,
        pairs: &[(usize, usize)],
    ) -> Result<Vec<f32>, GpuError> {
        let one = |&(i, j): &(usize, usize)| self.host_pair(anchor, norm_sq[r0 + i], r0 + i, j);
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            pairs.par_iter().with_min_len(256).map(one).collect()
        }
        #[cfg(target_arch = "wasm32")]
        pairs.iter().map(one).collect()
    }

    /// V[i, j] = vol(anchor_i, candidate_j), row-major [n1, n2], for a row-major [n1, dim]
    /// `anchor`. Every value is within [`GPU_TOLERANCE`] (1e-6) of the exact volume,
    /// relative (f32 rounding included); exact zeros stay zero. `OutOfRange` if a volume
    /// exceeds f32. Blocking; on the web use [`GpuScorer::volume_matrix_async`].
    pub fn volume_matrix(&self, anchor: &[f32]) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.volume_matrix_async(anchor))
    }

    /// [`GpuScorer::volume_matrix`] as a future (what a browser must use).
    pub async fn volume_matrix_async(&self, anchor: &[f32]) -> Result<Vec<f32>, GpuError> {
        let n1 = self.check_anchor(anchor)?;
        let prepared = Anchors::new(anchor, self.dim);
        let spec = self.spec(false);
        let (rb, cb) = self.blocks(n1, &spec)?;
        let a_blocks = self.anchor_blocks(&prepared, n1, rb, &spec);
        let refine = self.refines();
        let mut out = vec![0.0f32; n1 * self.n2];
        for c0 in (0..self.n2).step_by(cb) {
            let c = self.cand_block(c0, cb.min(self.n2 - c0), &spec);
            for a in &a_blocks {
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                // Refining: the kernel marks failures by the sign bit only (no list, no atomic
                // counter every failed pair contends for) and the pass leaves −1 on what still
                // fails; the block itself then names what the host recomputes.
                let list = (!refine).then(|| {
                    let cap = self.flag_capacity(a.rows * c.cols);
                    (self.ctx.output("flagged", (4 + 8 * cap) as u64), cap)
                });
                let res = self.dispatch_volume(
                    &mut encoder,
                    &spec,
                    a,
                    &c,
                    list.as_ref().map(|(f, cap)| (f, *cap)),
                );
                if refine {
                    self.dispatch_refine(&mut encoder, a, &c, &res, false);
                }
                self.ctx.queue.submit([encoder.finish()]);
                let block: Vec<f32> = self.ctx.read(&res, a.rows * c.cols).await?;
                for (i, row) in block.chunks_exact(c.cols).enumerate() {
                    let o = (a.r0 + i) * self.n2 + c0;
                    out[o..o + c.cols].copy_from_slice(row);
                }
                let pairs = match &list {
                    Some((flagged, cap)) => {
                        self.flagged_pairs(flagged, *cap, &block, c.cols, c0)
                            .await?
                    }
                    None => marked_pairs(&block, c.cols, c0),
                };
                self.host_pairs.fetch_add(pairs.len(), Ordering::Relaxed);
                let values = self.host_pairs(anchor, &prepared.norm_sq, a.r0, &pairs)?;
                for ((i, j), v) in pairs.into_iter().zip(values) {
                    out[(a.r0 + i) * self.n2 + j] = v;
                }
            }
        }
        Ok(out)
    }

    /// The pairs the kernel flagged, (row in the anchor block, global candidate): from its
    /// list, or — when the list overflowed — by scanning `block` (rows × cols, −1 = flagged;
    /// empty when the block was not read back, then `None`-like: an empty list is never
    /// returned for an overflow).
    async fn flagged_pairs(
        &self,
        flagged: &wgpu::Buffer,
        cap: usize,
        block: &[f32],
        cols: usize,
        c0: usize,
    ) -> Result<Vec<(usize, usize)>, GpuError> {
        let count = self.ctx.read::<u32>(flagged, 1).await?[0] as usize;
        if count == 0 {
            return Ok(Vec::new());
        }
        if count <= cap {
            let list: Vec<u32> = self.ctx.read(flagged, 1 + 2 * count).await?;
            return Ok(list[1..]
                .chunks_exact(2)
                .map(|p| (p[0] as usize, p[1] as usize))
                .collect());
        }
        Ok(marked_pairs(block, cols, c0))
    }

    /// For every anchor, the `k` candidates of smallest volume (ties: smaller index first) as
    /// (index, volume), ascending. Candidates stream through the GPU block by block and the
    /// selection runs there (k + 8 per anchor, pairs whose bound failed ranked by a lower
    /// bound); only those come back, the failed ones among them are recomputed on the host and
    /// the selection is verified (a row it cannot vouch for is scored on the host). Returned
    /// volumes are the host's (gram-nostd's `score_pair`, f64, exact where needed). Blocking;
    /// on the web use [`GpuScorer::top_k_async`].
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
        let prepared = Anchors::new(anchor, self.dim);
        let spec = self.spec(false);
        let (rb, cb) = self.blocks(n1, &spec)?;
        let c_blocks: Vec<CandBlock> = (0..self.n2)
            .step_by(cb)
            .map(|c0| self.cand_block(c0, cb.min(self.n2 - c0), &spec))
            .collect();
        let m = (k + self.top_k_slack).min(self.n2);
        let mut result = Vec::with_capacity(n1);
        for a in self.anchor_blocks(&prepared, n1, rb, &spec) {
            let (keys, idx) = self.select_block(&spec, &a, &c_blocks, m).await?;
            for i in 0..a.rows {
                let gi = a.r0 + i;
                let (keys, idx) = (&keys[i * m..(i + 1) * m], &idx[i * m..(i + 1) * m]);
                let norm_sq = prepared.norm_sq[gi];
                result.push(self.resolve_row(anchor, norm_sq, gi, keys, idx, k)?);
            }
        }
        Ok(result)
    }

    /// The device's top `m` of each anchor of block `a` over every candidate block, ranked by
    /// key (the volume, or a failed pair's lower bound): keys as the kernel wrote them (sign
    /// bit = failed) and candidate indices, [rows × m] each.
    async fn select_block(
        &self,
        spec: &Specialisation,
        a: &AnchorBlock,
        c_blocks: &[CandBlock],
        m: usize,
    ) -> Result<(Vec<f32>, Vec<u32>), GpuError> {
        let ctx = self.ctx;
        let r = a.rows;
        let best_key = ctx.storage("best_key", &vec![f32::INFINITY; r * m], true);
        let best_idx = ctx.storage("best_idx", &vec![u32::MAX; r * m], true);
        for c in c_blocks {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            let vols = self.dispatch_volume(&mut encoder, spec, a, c, None);
            if self.refines() {
                self.dispatch_refine(&mut encoder, a, c, &vols, true);
            }
            let params = ctx.uniform(&TopkParams {
                rows: r as u32,
                cols: c.cols as u32,
                k: m as u32,
                col_offset: c.c0 as u32,
            });
            let bind = ctx.bind(&ctx.topk, &[&params, &vols, &best_key, &best_idx]);
            ctx.dispatch(&mut encoder, &ctx.topk, &bind, (r.div_ceil(64) as u32, 1));
            ctx.queue.submit([encoder.finish()]);
        }
        Ok((
            ctx.read(&best_key, r * m).await?,
            ctx.read(&best_idx, r * m).await?,
        ))
    }

    /// Anchor `i`'s top k from the device's top m (`keys` as the kernel wrote them, ranked by
    /// magnitude; `idx` their candidates). Failed pairs are recomputed on the host, the rest
    /// keep the device's volume for ranking. Exact when m covers every candidate or when the
    /// k-th (volume, index) does not rank after the m-th (key, index): every pair left out has
    /// a key — a lower bound on its volume — ranking after that. Otherwise the row is scored
    /// on the host. Returned volumes are the host's.
    fn resolve_row(
        &self,
        anchor: &[f32],
        norm_sq: f64,
        i: usize,
        keys: &[f32],
        idx: &[u32],
        k: usize,
    ) -> Result<Vec<(u32, f32)>, GpuError> {
        let rank =
            |x: &(f32, u32, bool), y: &(f32, u32, bool)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
        let mut row = Vec::with_capacity(keys.len());
        for (&key, &j) in keys.iter().zip(idx) {
            let failed = key.is_sign_negative();
            let v = if failed {
                self.host_pair(anchor, norm_sq, i, j as usize)?
            } else {
                key
            };
            // The third field: whether `v` is already the host's volume.
            row.push((v, j, failed));
        }
        row.sort_by(rank);
        let last = (keys[keys.len() - 1].abs(), idx[idx.len() - 1], false);
        if keys.len() < self.n2 && rank(&row[k - 1], &last).is_gt() {
            self.host_rows.fetch_add(1, Ordering::Relaxed);
            row = (0..self.n2)
                .map(|j| Ok((self.host_pair(anchor, norm_sq, i, j)?, j as u32, true)))
                .collect::<Result<_, GpuError>>()?;
            row.sort_by(rank);
        }
        row.truncate(k);
        row.into_iter()
            .map(|(v, j, exact)| {
                let v = if exact {
                    v
                } else {
                    self.host_pair(anchor, norm_sq, i, j as usize)?
                };
                Ok((j, v))
            })
            .collect()
    }

    /// The reference GEMM for benchmarks: the fused kernel's own tiling and loads with the
    /// epilogue replaced by writing the cross dots — C = A'·Qᵀ, [n1, n2·(k−1)] for the scaled
    /// anchors A' and the stacked bases Q — so `volume_matrix`'s time can be set against the
    /// GEMM of the same shapes on the same adapter. With `read_back` false only one value per
    /// block comes back (to wait for the device), and `None` is returned.
    pub async fn reference_gemm_async(
        &self,
        anchor: &[f32],
        read_back: bool,
    ) -> Result<Option<Vec<f32>>, GpuError> {
        let n1 = self.check_anchor(anchor)?;
        let prepared = Anchors::new(anchor, self.dim);
        let spec = self.spec(true);
        let (rb, cb) = self.blocks(n1, &spec)?;
        let a_blocks = self.anchor_blocks(&prepared, n1, rb, &spec);
        let m = self.m();
        let mut out = if read_back {
            vec![0.0f32; n1 * self.n2 * m]
        } else {
            Vec::new()
        };
        for c0 in (0..self.n2).step_by(cb) {
            let c = self.cand_block(c0, cb.min(self.n2 - c0), &spec);
            for a in &a_blocks {
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                let res = self.dispatch_volume(&mut encoder, &spec, a, &c, None);
                self.ctx.queue.submit([encoder.finish()]);
                let n = if read_back { a.rows * c.cols * m } else { 1 };
                let block: Vec<f32> = self.ctx.read(&res, n).await?;
                if read_back {
                    for (i, row) in block.chunks_exact(c.cols * m).enumerate() {
                        let o = ((a.r0 + i) * self.n2 + c0) * m;
                        out[o..o + c.cols * m].copy_from_slice(row);
                    }
                }
            }
        }
        Ok(read_back.then_some(out))
    }

    /// Blocking [`GpuScorer::reference_gemm_async`].
    pub fn reference_gemm(
        &self,
        anchor: &[f32],
        read_back: bool,
    ) -> Result<Option<Vec<f32>>, GpuError> {
        pollster::block_on(self.reference_gemm_async(anchor, read_back))
    }

    /// The scaled anchors and stacked bases the reference GEMM multiplies (row-major,
    /// D padded), for checking it against a host GEMM.
    pub fn reference_operands(&self, anchor: &[f32]) -> (Vec<f32>, &[f32], usize) {
        (
            Anchors::new(anchor, self.dim).scaled,
            &self.cands.basis,
            padded_dim(self.dim),
        )
    }

    /// A short description of the kernel variant this device runs for this k.
    pub fn kernel(&self) -> String {
        let s = self.spec(false);
        format!(
            "{} loads, {}×{} invocations of {} anchors × {} candidates",
            if s.staged {
                "workgroup-staged".to_string()
            } else if s.subgroup > 0 {
                format!(
                    "direct vec4 (anchors shared by {}-lane subgroups)",
                    s.subgroup
                )
            } else {
                "direct vec4".to_string()
            },
            s.wx,
            s.wy,
            s.tm,
            s.tc
        )
    }
}

/// The pairs a block marks as failed (−1), as (row in the block, global candidate).
fn marked_pairs(block: &[f32], cols: usize, c0: usize) -> Vec<(usize, usize)> {
    block
        .iter()
        .enumerate()
        .filter(|(_, v)| **v < 0.0)
        .map(|(x, _)| (x / cols, c0 + x % cols))
        .collect()
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
