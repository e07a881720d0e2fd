//! Softmax over the last dimension as one op with its backward (candle-nn's fused
//! `softmax_last_dim` has none).

use crate::ops::cpu_op::{fused_here, slice};
#[cfg(feature = "cuda")]
use crate::ops::cuda_rows;
use candle_core::{CpuStorage, CustomOp1, D, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Softmax over the last dimension, differentiable: a fused op with its backward
/// (∂x = y·(∂y − Σ ∂y·y)) for f32 on the CPU and CUDA, candle's composed ops elsewhere.
/// (candle-nn's own fused `softmax_last_dim` has no backward, like its LayerNorm.)
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused_here(x) {
        return x.contiguous()?.apply_op1(SoftmaxOp);
    }
    candle_nn::ops::softmax(x, D::Minus1)
}

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "gram-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s, l, "layer norm / softmax")?;
        let d = l.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .for_each(|(yr, xr)| {
                let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                for o in yr.iter_mut() {
                    *o *= inv;
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda_rows::softmax(s, l)
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !res.device().is_cpu() {
            let (res, grad) = (&res.detach(), &grad.detach());
            let dot = (grad * res)?.sum_keepdim(D::Minus1)?;
            return Ok(Some((res * grad.broadcast_sub(&dot)?)?));
        }
        let host = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
        let (y, g) = (host(res)?, host(grad)?);
        let d = res.dims().last().copied().unwrap_or(1).max(1);
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(d)
            .zip(y.par_chunks(d).zip(g.par_chunks(d)))
            .for_each(|(o, (yr, gr))| {
                let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                for i in 0..d {
                    o[i] = yr[i] * (gr[i] - dot);
                }
            });
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
    }
}
