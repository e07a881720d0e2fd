//! The differentiable volume matrix V[i, j] = vol(anchor_i, m1_j, …, m_{k−1, j}).
//!
//! Dot products go through Candle (matmul for the B×B cross terms, row sums for the rest), so
//! their gradients flow to every input by Candle's own rules. The k×k part — sqrt(det G) of
//! each pair's Gram matrix — is a custom op whose forward is `gram_nostd::GramFactor`
//! (equilibrated, pivoted LDLᵀ in f64: the same code every other backend is tested against)
//! and whose backward is ∂vol/∂G = ½·vol·G⁻¹ from the same factorisation
//! ([`gram_nostd::GramFactor::volume_gradient`]). At a Gram matrix singular to working
//! precision (collinear or duplicated inputs) vol = 0 is its global minimum and the op returns
//! the subgradient 0, where the published sqrt(|det|) returns NaN.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use gram_nostd::GramFactor;
use rayon::prelude::*;

/// sqrt(det G) over the last two dimensions of a [..., k, k] tensor.
struct GramVolume;

fn gram_error(e: gram_nostd::GramError) -> candle_core::Error {
    candle_core::Error::Msg(format!("volume: {e}"))
}

/// Volumes of `g` (contiguous, `pairs` blocks of k×k) in f64.
fn volumes(g: &[f64], k: usize) -> Result<Vec<f64>> {
    g.par_chunks(k * k)
        .map(|block| {
            GramFactor::new(block, k)
                .and_then(|f| f.volume())
                .map_err(gram_error)
        })
        .collect()
}

impl CustomOp1 for GramVolume {
    fn name(&self) -> &'static str {
        "gram-volume"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gram-volume needs a contiguous input")
        };
        if dims.len() < 2 || dims[dims.len() - 1] != dims[dims.len() - 2] {
            candle_core::bail!("gram-volume needs [..., k, k], got {dims:?}")
        }
        let k = dims[dims.len() - 1];
        let out_shape = Shape::from(&dims[..dims.len() - 2]);
        let out = match storage {
            CpuStorage::F64(v) => CpuStorage::F64(volumes(&v[start..end], k)?),
            CpuStorage::F32(v) => {
                let g: Vec<f64> = v[start..end].iter().map(|&x| x as f64).collect();
                CpuStorage::F32(volumes(&g, k)?.into_iter().map(|x| x as f32).collect())
            }
            _ => candle_core::bail!("gram-volume: needs f32 or f64"),
        };
        Ok((out, out_shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dims = arg.dims().to_vec();
        let k = dims[dims.len() - 1];
        let g: Vec<f64> = arg
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        let up: Vec<f64> = grad_res
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        let mut grad = vec![0.0f64; g.len()];
        grad.par_chunks_mut(k * k)
            .zip(g.par_chunks(k * k))
            .zip(up.par_iter())
            .try_for_each(|((out, block), &u)| -> Result<()> {
                GramFactor::new(block, k)
                    .and_then(|f| f.volume_gradient(out))
                    .map_err(gram_error)?;
                out.iter_mut().for_each(|x| *x *= u);
                Ok(())
            })?;
        let grad = Tensor::from_vec(grad, dims, &Device::Cpu)?
            .to_dtype(arg.dtype())?
            .to_device(arg.device())?;
        Ok(Some(grad))
    }
}

/// sqrt(det G) over the last two dims of `g` [..., k, k], differentiable. Runs the k×k work on
/// the CPU whatever `g`'s device (it is B²·k² numbers, small next to the matmuls that made it).
pub fn gram_volume(g: &Tensor) -> Result<Tensor> {
    let dev = g.device().clone();
    if dev.is_cpu() {
        g.contiguous()?.apply_op1(GramVolume)
    } else {
        g.to_device(&Device::Cpu)?
            .contiguous()?
            .apply_op1(GramVolume)?
            .to_device(&dev)
    }
}

/// The per-pair Gram matrices [B1, B2, k, k] of (anchor_i, m1_j, …): entry (0,0) = ‖a_i‖²,
/// (0,t) = a_i·m_t,j (a matmul), (s,t) = m_s,j·m_t,j.
pub fn pair_gram(anchor: &Tensor, modalities: &[Tensor]) -> Result<Tensor> {
    let (b1, _) = anchor.dims2()?;
    let (b2, _) = modalities[0].dims2()?;
    let k = modalities.len() + 1;
    let vectors: Vec<&Tensor> = std::iter::once(anchor).chain(modalities.iter()).collect();
    let mut entries: Vec<Tensor> = Vec::with_capacity(k * k);
    for s in 0..k {
        for t in 0..k {
            let e = match (s, t) {
                (0, 0) => anchor
                    .sqr()?
                    .sum(1)?
                    .reshape((b1, 1))?
                    .broadcast_as((b1, b2))?,
                (0, t) => anchor.matmul(&vectors[t].t()?)?,
                (s, 0) => anchor.matmul(&vectors[s].t()?)?,
                (s, t) => (vectors[s] * vectors[t])?
                    .sum(1)?
                    .reshape((1, b2))?
                    .broadcast_as((b1, b2))?,
            };
            entries.push(e);
        }
    }
    Tensor::stack(&entries, 2)?.reshape((b1, b2, k, k))
}

/// V[i, j] = vol(anchor_i, m1_j, …, m_{k−1, j}) for anchor [B1, D] and modalities [B2, D].
pub fn volume_matrix(anchor: &Tensor, modalities: &[Tensor]) -> Result<Tensor> {
    gram_volume(&pair_gram(anchor, modalities)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicated_tuple_has_zero_volume_and_finite_gradient() {
        let dev = Device::Cpu;
        let a = candle_core::Var::from_vec(vec![0.6f64, 0.8, 0.0], (1, 3), &dev).unwrap();
        let m = Tensor::from_vec(vec![0.6f64, 0.8, 0.0], (1, 3), &dev).unwrap();
        let v = volume_matrix(a.as_tensor(), &[m]).unwrap();
        assert_eq!(v.to_vec2::<f64>().unwrap()[0][0], 0.0);
        let grads = v.sum_all().unwrap().backward().unwrap();
        let g = grads.get(a.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        assert!(g[0].iter().all(|x| x.is_finite()), "{g:?}");
    }
}
