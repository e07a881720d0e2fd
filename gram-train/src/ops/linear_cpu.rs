//! y = x·Wᵀ + b in f32 on the CPU as one op, with a backward that computes only what is needed.
//!
//! Why by hand: Candle's autograd (0.11) computes the gradient of both matmul operands even
//! when one does not need it — the features entering a head's first layer, a [B, in] GEMM per
//! step thrown away — and takes the bias gradient as a sum over the batch dimension, which its
//! CPU backend runs as a strided reduction (0.4 ms for a 256×256 f32 gradient, 35× an
//! element-wise add). Here the forward is one GEMM (the `gemm` crate, as Candle's CPU matmul,
//! same threads) with the bias as its initial value; the backward is ∂W = ∂yᵀ·x, ∂b = 1ᵀ·∂y (a
//! GEMM too) and ∂x = ∂y·W only where x takes part in the graph. Results equal the tensor-op
//! `Linear` to f32 GEMM rounding (tests/parity.rs).

use crate::ops::cpu_op::slice;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// x [N, in] · wᵀ ([out, in]) (+ b [out]) in f32 on the CPU; differentiable in all of them.
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
    let mut y = vec![0f32; n * out];
    if let Some(b) = b {
        for row in y.chunks_mut(out) {
            row.copy_from_slice(b);
        }
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: y is n×out row-major (strides out, 1), x is n×inp (inp, 1), and wᵀ is w read
    // with strides (1, inp), inp×out; all three slices have exactly those lengths (checked
    // above and by the contiguous layouts), and y does not alias the inputs.
    unsafe {
        gemm::gemm(
            n,
            out,
            inp,
            y.as_mut_ptr(),
            1,
            out as isize,
            b.is_some(),
            x.as_ptr(),
            1,
            inp as isize,
            w.as_ptr(),
            inp as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
    Ok((CpuStorage::F32(y), Shape::from((n, out))))
}

/// (∂x where x is tracked, ∂w, ∂b) for ∂y [N, out].
///
/// x and w are detached first: Candle keeps a parameter's accumulated gradient as it comes
/// (it detaches only the gradients of intermediate nodes), so ∂w = ∂yᵀ·x computed from the
/// tracked x would carry a graph node holding ∂y and x alive until the optimizer step — every
/// layer's output gradient retained through the whole backward (0.9 GB on a ViT-B/16 at
/// batch 16).
fn backward(x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Tensor, Tensor)> {
    let tracked = x.track_op();
    let (x, w) = (x.detach(), w.detach());
    let grad = grad.to_dtype(DType::F32)?.detach();
    let dx = if tracked {
        Some(grad.matmul(&w)?)
    } else {
        None
    };
    let dw = grad.t()?.matmul(&x)?;
    let ones = Tensor::ones((1, grad.dim(0)?), DType::F32, grad.device())?;
    let db = ones.matmul(&grad)?.squeeze(0)?;
    Ok((dx, dw, db))
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
