//! y = x·Wᵀ + b in f32 on the CPU as one op, with a backward that computes only what is needed.
//!
//! Why by hand: Candle's autograd (0.11) computes the gradient of both matmul operands even
//! when one does not need it — the features entering a head's first layer, a [B, in] GEMM per
//! step thrown away — and takes the bias gradient as a sum over the batch dimension, which its
//! CPU backend runs as a strided reduction (0.4 ms for a 256×256 f32 gradient, 35× an
//! element-wise add). Here the forward is one GEMM (the `gemm` crate, as Candle's CPU matmul,
//! each thread a block of rows: `crate::ops::gemm_cpu`) with the bias as its initial value;
//! the backward is ∂W = ∂yᵀ·x and ∂x = ∂y·W (the latter only where x takes part in the graph),
//! two more GEMMs, and ∂b = 1ᵀ·∂y as column sums. Results equal the tensor-op
//! `Linear` to f32 GEMM rounding (tests/parity.rs).

use crate::ops::cpu_op::{slice, with_host};
use crate::ops::gemm_cpu::{gemm_rows, view};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// x [N, in] · wᵀ ([out, in]) (+ b \[out\]) in f32 on the CPU; differentiable in all of them.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, LinearOp),
        None => x.apply_op2(&w, LinearOp),
    }
}

struct LinearOp;

/// y = x·wᵀ + b for row-major x [n, inp], w [out, inp], b [out] (or none).
fn forward(
    x: &[f32],
    xl: &Layout,
    w: &[f32],
    wl: &Layout,
    b: Option<&[f32]>,
) -> Result<(CpuStorage, Shape)> {
    let (n, inp) = xl.shape().dims2()?;
    let (out, w_inp) = wl.shape().dims2()?;
    if w_inp != inp || b.is_some_and(|b| b.len() != out) {
        candle_core::bail!(
            "linear: x {:?}, w {:?}, b of {:?} do not fit",
            xl.shape(),
            wl.shape(),
            b.map(<[f32]>::len)
        )
    }
    // y = x·wᵀ: x [n, inp] row-major, wᵀ is w read with strides (1, inp) as [inp, out].
    let y = gemm_rows((n, out, inp), b, view(x, inp, 1), view(w, 1, inp));
    Ok((CpuStorage::F32(y), Shape::from((n, out))))
}

/// (∂x where x is tracked, ∂w, ∂b) for ∂y [N, out]: ∂x = ∂y·w, ∂w = ∂yᵀ·x, ∂b = 1ᵀ·∂y.
///
/// New tensors made from host buffers, so no gradient carries a graph node: Candle keeps a
/// parameter's accumulated gradient as it comes (it detaches only the gradients of
/// intermediate nodes), and ∂w computed by tensor ops from the tracked x would hold ∂y and x
/// alive until the optimizer step — every layer's output gradient retained through the whole
/// backward (0.9 GB on a ViT-B/16 at batch 16).
fn backward(x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Tensor, Tensor)> {
    let tracked = x.track_op();
    let grad = grad.to_dtype(DType::F32)?.contiguous()?;
    let ((n, inp), out) = (x.dims2()?, w.dim(0)?);
    let (dx, dw, db) = with_host([x, w, &grad], "linear backward", |[x, w, g]| {
        let dx = tracked.then(|| gemm_rows((n, inp, out), None, view(g, out, 1), view(w, inp, 1)));
        // ∂yᵀ [out, n] is ∂y read with strides (1, out).
        let dw = gemm_rows((out, inp, n), None, view(g, 1, out), view(x, inp, 1));
        let mut db = vec![0f32; out];
        for row in g.chunks_exact(out) {
            db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
        }
        Ok((dx, dw, db))
    })?;
    let dev = x.device();
    Ok((
        dx.map(|dx| Tensor::from_vec(dx, (n, inp), dev))
            .transpose()?,
        Tensor::from_vec(dw, (out, inp), dev)?,
        Tensor::from_vec(db, out, dev)?,
    ))
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "gram-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        forward(
            slice::<f32>(xs, xl, "linear")?,
            xl,
            slice::<f32>(ws, wl, "linear")?,
            wl,
            None,
        )
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = backward(x, w, grad)?;
        Ok((dx, Some(dw)))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "gram-linear-bias"
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
        forward(
            slice::<f32>(xs, xl, "linear")?,
            xl,
            slice::<f32>(ws, wl, "linear")?,
            wl,
            Some(slice::<f32>(bs, bl, "linear")?),
        )
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = backward(x, w, grad)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Values and gradients against Candle's matmul + broadcast add (f32 GEMM rounding apart),
    /// with and without bias, features tracked or not (then no ∂x is made), small and GEMM-
    /// blocked sizes.
    #[test]
    fn equals_the_tensor_ops() {
        let dev = Device::Cpu;
        for (n, inp, out) in [(5, 7, 3), (70, 130, 33), (256, 96, 64)] {
            for (bias, tracked) in [(true, true), (false, true), (true, false)] {
                let x = Var::randn(0f32, 1.0, (n, inp), &dev).unwrap();
                let w = Var::randn(0f32, 0.2, (out, inp), &dev).unwrap();
                let b = Var::randn(0f32, 1.0, out, &dev).unwrap();
                let gy = Tensor::randn(0f32, 1.0, (n, out), &dev).unwrap();
                let xt = if tracked {
                    x.as_tensor().clone()
                } else {
                    x.as_tensor().detach()
                };
                let bias_t = bias.then(|| b.as_tensor());
                let mine = linear(&xt, w.as_tensor(), bias_t).unwrap();
                let mut theirs = xt.matmul(&w.as_tensor().t().unwrap()).unwrap();
                if let Some(b) = bias_t {
                    theirs = theirs.broadcast_add(b).unwrap();
                }
                let g1 = (&mine * &gy)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let g2 = (&theirs * &gy)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let close = |p: &Tensor, q: &Tensor, what: &str| {
                    let p = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let q = q.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let scale = q.iter().fold(0f32, |s, v| s.max(v.abs()));
                    for (a, c) in p.iter().zip(&q) {
                        assert!(
                            (a - c).abs() <= 1e-5 * scale,
                            "{what} {n}×{inp}→{out}: {a} vs {c}"
                        );
                    }
                };
                close(&mine, &theirs, "y");
                close(
                    g1.get(w.as_tensor()).unwrap(),
                    g2.get(w.as_tensor()).unwrap(),
                    "dw",
                );
                if bias {
                    close(
                        g1.get(b.as_tensor()).unwrap(),
                        g2.get(b.as_tensor()).unwrap(),
                        "db",
                    );
                }
                match (g1.get(x.as_tensor()), tracked) {
                    (Some(dx), true) => close(dx, g2.get(x.as_tensor()).unwrap(), "dx"),
                    (None, false) => {}
                    (got, _) => panic!("dx present: {}, x tracked: {tracked}", got.is_some()),
                }
            }
        }
    }
}
