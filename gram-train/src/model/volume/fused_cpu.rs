//! The CPU path of the volume matrix: the k×k part as one custom op over (cross [B1, B2, m], inner [B2, m, m],
//! norms [B1]) whose forward and backward are [`gram_host::pair_gram`] (each pair's Gram
//! matrix factored by `gram_nostd::GramFactor` in f64, ∂vol/∂G = ½·vol·G⁻¹ from the same
//! factorisation, scattered back to the three inputs) — the code the Python package's
//! PyTorch function runs too. At a Gram matrix singular to working precision (collinear or duplicated inputs)
//! vol = 0 is its global minimum and the op returns the subgradient 0, where the published
//! sqrt(|det|) returns NaN.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use gram_host::pair_gram::{self, PairDims};
use gram_nostd::MAX_K;

struct PairVolumes;

fn gram_error(e: gram_nostd::GramError) -> candle_core::Error {
    candle_core::Error::Msg(format!("volume: {e}"))
}

fn values(s: &CpuStorage, l: &Layout) -> Result<Vec<f64>> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("pair-volumes needs contiguous inputs")
    };
    Ok(match s {
        CpuStorage::F64(v) => v[start..end].to_vec(),
        CpuStorage::F32(v) => v[start..end].iter().map(|&x| x as f64).collect(),
        _ => candle_core::bail!("pair-volumes needs f32 or f64"),
    })
}

/// Shapes (b1, b2, m) of the op's three inputs, checked against each other.
fn dims(cross: &Shape, inner: &Shape, norms: &Shape) -> Result<PairDims> {
    let (b1, b2, m) = cross.dims3()?;
    if inner.dims() != [b2, m, m] || norms.dims() != [b1] || m + 1 > MAX_K {
        candle_core::bail!("pair-volumes: shapes {cross:?}, {inner:?}, {norms:?} do not fit")
    }
    Ok(PairDims { b1, b2, m })
}

impl CustomOp3 for PairVolumes {
    fn name(&self) -> &'static str {
        "gram-pair-volumes"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = dims(l1.shape(), l2.shape(), l3.shape())?;
        let (cross, inner, norms) = (values(s1, l1)?, values(s2, l2)?, values(s3, l3)?);
        let out = pair_gram::pair_volumes(&cross, &inner, &norms, d).map_err(gram_error)?;
        let storage = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(out.into_iter().map(|x| x as f32).collect()),
            _ => CpuStorage::F64(out),
        };
        Ok((storage, Shape::from((d.b1, d.b2))))
    }

    fn bwd(
        &self,
        cross_t: &Tensor,
        inner_t: &Tensor,
        norms_t: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = dims(cross_t.shape(), inner_t.shape(), norms_t.shape())?;
        let host = |t: &Tensor| -> Result<Vec<f64>> {
            t.flatten_all()?
                .to_dtype(DType::F64)?
                .to_device(&Device::Cpu)?
                .to_vec1()
        };
        let g = pair_gram::pair_volume_grads(
            &host(cross_t)?,
            &host(inner_t)?,
            &host(norms_t)?,
            &host(grad_res)?,
            d,
        )
        .map_err(gram_error)?;
        let back = |v: Vec<f64>, like: &Tensor| -> Result<Tensor> {
            Tensor::from_vec(v, like.shape(), &Device::Cpu)?
                .to_dtype(like.dtype())?
                .to_device(like.device())
        };
        Ok((
            Some(back(g.cross, cross_t)?),
            Some(back(g.inner, inner_t)?),
            Some(back(g.norms, norms_t)?),
        ))
    }
}

/// V[i, j] = vol(anchor_i, m1_j, …, m_{k−1, j}) for anchor [B1, D] and modalities [B2, D],
/// differentiable with respect to all of them. The k×k work runs on the CPU whatever the
/// device (B1·B2·k² numbers, small next to the matmuls that made them).
pub(super) fn volume_matrix(anchor: &Tensor, modalities: &[Tensor]) -> Result<Tensor> {
    if !matches!(anchor.dtype(), DType::F32 | DType::F64) {
        let f32s: Vec<Tensor> = modalities
            .iter()
            .map(|m| m.to_dtype(DType::F32))
            .collect::<Result<_>>()?;
        return volume_matrix(&anchor.to_dtype(DType::F32)?, &f32s);
    }
    let (b2, _) = modalities[0].dims2()?;
    let m = modalities.len();
    let cross: Vec<Tensor> = modalities
        .iter()
        .map(|x| anchor.matmul(&x.t()?))
        .collect::<Result<_>>()?;
    let cross = Tensor::stack(&cross, 2)?;
    let mut inner = Vec::with_capacity(m * m);
    for s in modalities {
        for t in modalities {
            inner.push((s * t)?.sum(1)?);
        }
    }
    let inner = Tensor::stack(&inner, 1)?.reshape((b2, m, m))?;
    let norms = anchor.sqr()?.sum(1)?;
    let dev = anchor.device().clone();
    if dev.is_cpu() {
        pair_volumes(&cross, &inner, &norms)
    } else {
        let cpu = |t: Tensor| t.to_device(&Device::Cpu);
        pair_volumes(&cpu(cross)?, &cpu(inner)?, &cpu(norms)?)?.to_device(&dev)
    }
}

/// The k×k part on the CPU: `cross` [B1, B2, m], `inner` [B2, m, m], `norms` [B1] (squared
/// anchor norms), all on the CPU and contiguous; returns V [B1, B2] in the inputs' dtype.
pub(super) fn pair_volumes(cross: &Tensor, inner: &Tensor, norms: &Tensor) -> Result<Tensor> {
    cross
        .contiguous()?
        .apply_op3(&inner.contiguous()?, &norms.contiguous()?, PairVolumes)
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
