//! A function of Candle ops as one op that keeps only its inputs and output for the backward
//! (gradient checkpointing of one op): the forward runs the ops on *detached* inputs, so their
//! intermediates are freed as soon as the output exists; the backward runs them again inside a
//! small graph of its own and differentiates that. Cost: the function once more per backward.
//!
//! Used where our fused CPU ops do not run (CUDA, and dtypes other than f32): attention, whose
//! [B, H, T, T] scores and probabilities then live only inside one layer's forward or backward
//! (the FlashAttention op's memory contract), and quick GELU's chain of three element-wise ops.
//!
//! Why not a CUDA kernel of ours yet: it needs a GPU to test; this keeps the memory a backward
//! holds at the fused op's count on every device meanwhile, with cuBLAS doing the matmuls. Its
//! values and gradients are the tensor-op form's exactly (the same ops, recomputed).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Storage, Tensor, Var};
use std::sync::{Arc, Mutex};

/// `f(a, b, c)` keeping for the backward only a, b, c and the output (attention's q, k, v).
pub fn ternary_recomputed(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let f = move |x: &[Tensor]| f(&x[0], &x[1], &x[2]);
    Recomputed::new(Arc::new(f), &[a, b, c])?.apply3(a, b, c)
}

/// `f(x)` keeping for the backward only x and the output (element-wise chains such as quick
/// GELU's three ops on CUDA).
pub fn unary_recomputed(
    x: &Tensor,
    f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let f = move |x: &[Tensor]| f(&x[0]);
    x.apply_op1(Recomputed::new(Arc::new(f), &[x])?)
}

/// A differentiable function of its inputs, from Candle ops.
type Function = Arc<dyn Fn(&[Tensor]) -> Result<Tensor> + Send + Sync>;

/// The op: `f` evaluated on detached inputs before the op is applied (`out`, taken by the
/// forward so it is not kept twice), and again, differentiated, in the backward.
struct Recomputed {
    f: Function,
    out: Mutex<Option<Tensor>>,
}

impl Recomputed {
    fn new(f: Function, inputs: &[&Tensor]) -> Result<Recomputed> {
        let detached: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
        // A storage of its own from offset 0: the forward hands out a copy of it.
        let out = f(&detached)?.contiguous()?.copy()?;
        Ok(Recomputed {
            f,
            out: Mutex::new(Some(out)),
        })
    }

    fn apply3(self, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<Tensor> {
        a.apply_op3(b, c, self)
    }

    /// The precomputed output as `pick` extracts its storage for this device.
    fn take<S>(&self, pick: impl Fn(&Storage, &Layout) -> Result<S>) -> Result<(S, Shape)> {
        let out = self
            .out
            .lock()
            .expect("recomputed op: poisoned output")
            .take()
            .ok_or_else(|| candle_core::Error::Msg("recomputed op: forward ran twice".into()))?;
        let (storage, layout) = out.storage_and_layout();
        Ok((pick(&storage, layout)?, layout.shape().clone()))
    }

    fn cpu(&self) -> Result<(CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        self.take(|s, l| match s {
            Storage::Cpu(s) => s.try_clone(l),
            _ => candle_core::bail!("recomputed op: output not on the CPU"),
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        self.take(|s, l| match s {
            Storage::Cuda(s) => s.try_clone(l),
            _ => candle_core::bail!("recomputed op: output not on the GPU"),
        })
    }

    /// ∂ of Σ f(inputs)∘grad with respect to each input, detached (like every gradient this
    /// crate returns: see `linear_cpu::backward`).
    fn grads(&self, inputs: &[&Tensor], grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let leaves = inputs
            .iter()
            .map(|t| Var::from_tensor(&t.detach()).map(|v| v.as_tensor().clone()))
            .collect::<Result<Vec<_>>>()?;
        let out = (self.f)(&leaves)?;
        let grads = (out * grad.detach())?.sum_all()?.backward()?;
        Ok(leaves
            .iter()
            .map(|t| grads.get(t).map(Tensor::detach))
            .collect())
    }
}

impl CustomOp1 for Recomputed {
    fn name(&self) -> &'static str {
        "gram-recomputed-1"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda()
    }

    fn bwd(&self, x: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.grads(&[x], grad)?.pop().flatten())
    }
}

impl CustomOp3 for Recomputed {
    fn name(&self) -> &'static str {
        "gram-recomputed-3"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[a, b, c], grad)?.into_iter();
        Ok((g.next().flatten(), g.next().flatten(), g.next().flatten()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The recomputed function's values and gradient equal the direct one's, and the gradient
    /// carries no graph.
    #[test]
    fn equals_its_tensor_ops_and_keeps_no_graph() {
        let x: [Var; 3] =
            std::array::from_fn(|_| Var::randn(0f64, 1.0, (4, 6), &Device::Cpu).unwrap());
        let f = |a: &Tensor, b: &Tensor, c: &Tensor| (a.matmul(&b.t()?)?.tanh()?).matmul(c);
        let (a, b, c) = (x[0].as_tensor(), x[1].as_tensor(), x[2].as_tensor());
        let ours = ternary_recomputed(a, b, c, f).unwrap();
        let want = f(a, b, c).unwrap();
        let g1 = ours.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = want.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(flat(&ours), flat(&want));
        for v in &x {
            let (ga, gb) = (
                g1.get(v.as_tensor()).unwrap(),
                g2.get(v.as_tensor()).unwrap(),
            );
            assert!(!ga.track_op());
            let worst = flat(ga)
                .iter()
                .zip(flat(gb))
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max);
            assert!(worst <= 1e-12, "differs by {worst}");
        }
        assert_eq!(ours.dtype(), DType::F64);
    }
}
