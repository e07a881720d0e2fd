//! What the fused CPU ops (LayerNorm, softmax, GELU, Linear, cross-entropy, the volume's pair
//! stage) share: borrowing a contiguous tensor's data in place.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Tensor, WithDType};

/// The elements of a contiguous tensor of dtype `T` in `s` (no copy); an error naming `op`
/// for another dtype or a strided layout.
pub(crate) fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [T]> {
    match (s.as_slice::<T>(), l.contiguous_offsets()) {
        (Ok(v), Some((start, end))) => Ok(&v[start..end]),
        _ => candle_core::bail!(
            "{op}: needs a contiguous {:?} tensor, got {:?} {:?}",
            T::DTYPE,
            s.dtype(),
            l.shape()
        ),
    }
}

/// [`slice`] for writing: the elements of a contiguous f32 tensor in `s`, in place.
pub(crate) fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&mut v[start..end]),
        (s, _) => candle_core::bail!(
            "{op}: needs a contiguous F32 tensor to write, got {:?} {:?}",
            s.dtype(),
            l.shape()
        ),
    }
}

/// Where the fused LayerNorm and softmax run: f32 on the CPU (our loops) or on CUDA
/// (candle-kernels' row kernels, the ones candle-nn's no-backward ops launch).
pub(crate) fn fused_here(x: &Tensor) -> bool {
    x.dtype() == DType::F32 && (x.device().is_cpu() || x.device().is_cuda())
}
