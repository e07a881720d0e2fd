//! Attention on devices without our fused kernel (CUDA, and dtypes other than f32 on the CPU),
//! with the FlashAttention memory contract by recomputation: the forward runs Candle's tensor
//! ops on *detached* q, k, v, so its [B, H, T, T] scores and probabilities are freed as soon as
//! the output exists; the op keeps q, k, v and the output, and its backward runs the same
//! forward again inside a small graph of its own and differentiates that (gradient
//! checkpointing of one op). Cost: one more attention forward per layer in the backward pass.
//!
//! Why not a CUDA kernel of ours yet: it needs a GPU to test; this keeps the memory a backward
//! holds at the fused op's count on every device meanwhile, with cuBLAS doing the matmuls. Its
//! values and gradients are the tensor-op form's exactly (the same ops, recomputed).

use crate::attention::attention_ops;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, Var};
use std::sync::Mutex;

/// softmax(q·kᵀ/√d + mask)·v per head, keeping for the backward only q, k, v and the output.
pub fn attention_recomputed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    key_mask: Option<&Tensor>,
) -> Result<Tensor> {
    let out = attention_ops(&q.detach(), &k.detach(), &v.detach(), heads, key_mask)?;
    // A storage of its own from offset 0: the op hands out a copy of it in its forward.
    let out = out.contiguous()?.copy()?;
    let op = Recomputed {
        heads,
        key_mask: key_mask.map(Tensor::detach),
        out: Mutex::new(Some(out)),
    };
    q.apply_op3(k, v, op)
}

/// The op: `out` is taken by its forward (so it is not kept twice).
struct Recomputed {
    heads: usize,
    key_mask: Option<Tensor>,
    out: Mutex<Option<Tensor>>,
}

impl Recomputed {
    /// The precomputed output as `pick` extracts its storage for this device.
    fn take<S>(&self, pick: impl Fn(&Storage, &Layout) -> Result<S>) -> Result<(S, Shape)> {
        let out = self
            .out
            .lock()
            .expect("attention: poisoned output")
            .take()
            .ok_or_else(|| candle_core::Error::Msg("attention: forward ran twice".into()))?;
        let (storage, layout) = out.storage_and_layout();
        Ok((pick(&storage, layout)?, layout.shape().clone()))
    }
}

impl CustomOp3 for Recomputed {
    fn name(&self) -> &'static str {
        "gram-attention-recomputed"
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
        use candle_core::backend::BackendStorage;
        self.take(|s, l| match s {
            Storage::Cpu(s) => s.try_clone(l),
            _ => candle_core::bail!("attention: output not on the CPU"),
        })
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
        use candle_core::backend::BackendStorage;
        self.take(|s, l| match s {
            Storage::Cuda(s) => s.try_clone(l),
            _ => candle_core::bail!("attention: output not on the GPU"),
        })
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let leaf = |t: &Tensor| Var::from_tensor(&t.detach()).map(|v| v.as_tensor().clone());
        let (q, k, v) = (leaf(q)?, leaf(k)?, leaf(v)?);
        let out = attention_ops(&q, &k, &v, self.heads, self.key_mask.as_ref())?;
        let grads = (out * grad.detach())?.sum_all()?.backward()?;
        // Detached, like every gradient this crate returns (see `linear_cpu::backward`).
        let get = |t: &Tensor| grads.get(t).map(Tensor::detach);
        Ok((get(&q), get(&k), get(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn value_and_grads(
        f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
        x: &[Var; 3],
        w: &Tensor,
    ) -> Vec<Vec<f64>> {
        let out = f(x[0].as_tensor(), x[1].as_tensor(), x[2].as_tensor()).unwrap();
        let grads = (&out * w).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let mut all = vec![flat(&out)];
        all.extend(x.iter().map(|v| flat(grads.get(v.as_tensor()).unwrap())));
        all
    }

    /// Values and ∂q, ∂k, ∂v equal the tensor-op form's (f64, so the path any non-f32 dtype
    /// takes on the CPU, and CUDA's), with and without a padding mask; the op runs once per
    /// forward and the gradients carry no graph.
    #[test]
    fn equals_the_tensor_ops_and_keeps_no_graph() {
        let dev = Device::Cpu;
        let (b, t, heads, hd) = (2, 11, 3, 4);
        let x: [Var; 3] =
            std::array::from_fn(|_| Var::randn(0f64, 1.0, (b, t, heads * hd), &dev).unwrap());
        let w = Tensor::randn(0f64, 1.0, (b, t, heads * hd), &dev).unwrap();
        let m: Vec<f64> = (0..b * t)
            .map(|i| f64::from(u8::from(i % t < 6 || i < t)))
            .collect();
        let mask = Tensor::from_vec(m, (b, t), &dev).unwrap();
        for mask in [None, Some(&mask)] {
            let ours =
                value_and_grads(|q, k, v| attention_recomputed(q, k, v, heads, mask), &x, &w);
            let ops = value_and_grads(|q, k, v| attention_ops(q, k, v, heads, mask), &x, &w);
            for (a, b) in ours.iter().zip(&ops) {
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                assert!(worst <= 1e-12, "differs by {worst}");
            }
        }
        let out = attention_recomputed(
            x[0].as_tensor(),
            x[1].as_tensor(),
            x[2].as_tensor(),
            heads,
            None,
        )
        .unwrap();
        let grads = out.sum_all().unwrap().backward().unwrap();
        for v in &x {
            assert!(!grads.get(v.as_tensor()).unwrap().track_op());
        }
        assert_eq!(out.dtype(), DType::F64);
    }
}
