//! The differentiable volume matrix V[i, j] = vol(anchor_i, m1_j, …, m_{k−1, j}).
//!
//! Two implementations of one contract, tested against each other and against gram-nostd:
//!
//! - `fused_cpu`: Candle matmuls for the dot products, then one CPU custom op whose forward
//!   and backward are gram-nostd's `GramFactor` (pivoted LDLᵀ in f64) on every pair's k×k Gram
//!   matrix.
//! - [`tensor_ops`]: the same volume as a chain of Candle tensor operations in f64 (unit rows,
//!   Cholesky of each candidate's Gram matrix, forward substitution of the anchor), so it runs
//!   on any Candle device (CUDA, Metal, CPU) with Candle's own autograd and no host copy.
//! - `pairs_cpu`: the tensor-op path with its per-pair stage (forward substitution, square
//!   root) as one CPU op with a hand-written backward — the CPU default.
//!
//! All three: relative error ≤ 1e-5 against gram-nostd on random tuples (f32 inputs), vol = 0 with a
//! finite (sub)gradient 0 at tuples singular to working precision (duplicates, collinear, zero
//! vectors, k > D), where the published sqrt(|det|) gives NaN; output f64 for f64 inputs, f32
//! otherwise (bf16 inputs included: the volume and the loss stay in f32 or better).

mod fused_cpu;
mod pairs_cpu;
pub mod tensor_ops;

use candle_core::{Result, Tensor};

/// Which implementation computes the volume matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumePath {
    /// gram-nostd's `GramFactor` in a CPU custom op (inputs on another device are copied over).
    FusedCpu,
    /// Candle tensor ops in f64 on the inputs' device.
    TensorOps,
    /// [`TensorOps`](VolumePath::TensorOps) with the per-pair stage in one CPU op (CPU only).
    CpuPairs,
}

impl VolumePath {
    /// The default for a device: the tensor ops with the CPU pair stage on the CPU, the plain
    /// tensor ops elsewhere (measured fastest on each: README, "Training step"); the fused op
    /// stays as the reference implementation the tests compare with.
    pub fn for_device(dev: &candle_core::Device) -> VolumePath {
        if dev.is_cpu() {
            VolumePath::CpuPairs
        } else {
            VolumePath::TensorOps
        }
    }
}

/// V[i, j] = vol(anchor_i, m1_j, …, m_{k−1, j}) for anchor [B1, D] and modalities [B2, D] each,
/// differentiable with respect to all of them, on the inputs' device.
pub fn volume_matrix(anchor: &Tensor, modalities: &[Tensor]) -> Result<Tensor> {
    volume_matrix_with(VolumePath::for_device(anchor.device()), anchor, modalities)
}

/// [`volume_matrix`] by a chosen implementation.
pub fn volume_matrix_with(
    path: VolumePath,
    anchor: &Tensor,
    modalities: &[Tensor],
) -> Result<Tensor> {
    if modalities.is_empty() || modalities.len() + 1 > gram_nostd::MAX_K {
        candle_core::bail!(
            "volume matrix: {} modalities besides the anchor (1..={} allowed)",
            modalities.len(),
            gram_nostd::MAX_K - 1
        )
    }
    match path {
        VolumePath::FusedCpu => fused_cpu::volume_matrix(anchor, modalities),
        VolumePath::TensorOps => tensor_ops::volume_matrix(anchor, modalities),
        VolumePath::CpuPairs if !anchor.device().is_cpu() => {
            candle_core::bail!("volume matrix: the CPU pair stage needs CPU tensors")
        }
        VolumePath::CpuPairs => {
            tensor_ops::volume_matrix_staged(anchor, modalities, tensor_ops::Stage::CpuOp)
        }
    }
}
