//! LayerNorm over the last dimension as one op with its own backward (a fused loop on the CPU,
//! candle-kernels' row kernel on CUDA), and the tensor-op form every other device runs.
//!
//! Why not candle-nn's: 0.11's `LayerNorm` takes a fused kernel without a backward pass whenever
//! its input is contiguous (huggingface/candle#2977, #3011), so every parameter below it silently
//! gets no gradient.

use crate::ops::cpu_op::{fused_here, slice, with_host};
#[cfg(feature = "cuda")]
use crate::ops::cuda_rows;
use crate::ops::simd::vectorised;
use candle_core::{CpuStorage, CustomOp3, D, Layout, Result, Shape, Tensor};
use candle_nn::{VarBuilder, init::Init};
use rayon::prelude::*;

/// Rows per parallel task (each row is only D wide).
const ROWS: usize = 64;

/// LayerNorm over the last dimension: (x − mean)/sqrt(var + eps)·weight + bias.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused_here(x) {
            // One fused pass each way instead of nine allocating tensor ops (whose outputs
            // the backward pass would keep: on a ViT-B that is most of the GPU's memory).
            return x.contiguous()?.apply_op3(
                &self.weight,
                &self.bias,
                LayerNormOp { eps: self.eps },
            );
        }
        self.forward_ops(x)
    }

    /// The same function from differentiable tensor ops (any device; the CPU op's reference).
    pub fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// LayerNorm over rows of a contiguous f32 tensor (CPU, or CUDA via candle-kernels), with its
/// backward (on the CPU a fused loop, on a GPU tensor ops over the recomputed x̂):
/// x̂ = (x − μ)·r, r = 1/sqrt(σ² + eps); y = x̂·w + b;
/// ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = ∂y·w; ∂w = Σ ∂y·x̂; ∂b = Σ ∂y.
struct LayerNormOp {
    eps: f64,
}

/// Mean and 1/std of a row (two passes in f64: rows are short, accuracy is cheap).
#[inline(always)]
fn row_stats(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "gram-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            slice::<f32>(xs, xl, "layer norm / softmax")?,
            slice::<f32>(ws, wl, "layer norm / softmax")?,
            slice::<f32>(bs, bl, "layer norm / softmax")?,
        );
        let d = w.len();
        if d == 0 || x.len() % d != 0 || b.len() != d {
            candle_core::bail!("layer norm: last dimension differs from the weight's {d}")
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(ROWS * d)
            .zip(x.par_chunks(ROWS * d))
            .for_each(|(yc, xc)| {
                vectorised(|| {
                    for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                        let (mean, r) = row_stats(xr, self.eps);
                        for i in 0..d {
                            yr[i] = (xr[i] - mean) * r * w[i] + b[i];
                        }
                    }
                })
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
        bs: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda_rows::layer_norm(xs, xl, ws, wl, bs, bl, self.eps as f32)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !x.device().is_cpu() {
            return layer_norm_bwd_ops(x, w, grad, self.eps);
        }
        let grad = grad.contiguous()?;
        // Read in place: the inputs are contiguous (the forward made x so; w is a parameter).
        let (dx, dw, db) = with_host([x, w, &grad], "layer norm backward", |[xv, wv, gv]| {
            let d = wv.len();
            let mut dx = vec![0f32; xv.len()];
            let (dw, db) = dx
                .par_chunks_mut(ROWS * d)
                .zip(xv.par_chunks(ROWS * d).zip(gv.par_chunks(ROWS * d)))
                .map(|(dxc, (xc, gc))| {
                    vectorised(|| {
                        let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
                        let mut xhat = vec![0f32; d];
                        for ((dxr, xr), gr) in dxc.chunks_mut(d).zip(xc.chunks(d)).zip(gc.chunks(d))
                        {
                            let (mean, r) = row_stats(xr, self.eps);
                            let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                            for i in 0..d {
                                xhat[i] = (xr[i] - mean) * r;
                                let gh = gr[i] * wv[i];
                                sum_g += gh;
                                sum_gx += gh * xhat[i];
                                dw[i] += gr[i] * xhat[i];
                                db[i] += gr[i];
                            }
                            let (mg, mgx) = (sum_g / d as f32, sum_gx / d as f32);
                            for i in 0..d {
                                dxr[i] = r * (gr[i] * wv[i] - mg - xhat[i] * mgx);
                            }
                        }
                        (dw, db)
                    })
                })
                .reduce(
                    || (vec![0f32; d], vec![0f32; d]),
                    |(mut a, mut b), (c, e)| {
                        for i in 0..d {
                            a[i] += c[i];
                            b[i] += e[i];
                        }
                        (a, b)
                    },
                );
            Ok((dx, dw, db))
        })?;
        let d = dw.len();
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, d, dev)?),
            Some(Tensor::from_vec(db, d, dev)?),
        ))
    }
}

/// The LayerNorm backward as tensor ops (devices other than the CPU): x̂ recomputed from x,
/// transient, so the forward keeps only x.
fn layer_norm_bwd_ops(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    eps: f64,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    // Detached, so the weight's gradient carries no graph node holding x and ∂y (Candle keeps
    // a parameter's gradient as computed: see `linear_cpu::backward`).
    let (x, w, grad) = (&x.detach(), &w.detach(), &grad.detach());
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let r = (centred.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    let xhat = centred.broadcast_mul(&r)?;
    let gh = grad.broadcast_mul(w)?;
    let mg = gh.mean_keepdim(D::Minus1)?;
    let mgx = (&gh * &xhat)?.mean_keepdim(D::Minus1)?;
    let dx = gh
        .broadcast_sub(&mg)?
        .sub(&xhat.broadcast_mul(&mgx)?)?
        .broadcast_mul(&r)?;
    let d = w.elem_count();
    let rows = |t: &Tensor| t.reshape(((), d));
    let dw = rows(&(grad * &xhat)?)?.sum(0)?;
    let db = rows(grad)?.sum(0)?;
    Ok((Some(dx), Some(dw), Some(db)))
}
