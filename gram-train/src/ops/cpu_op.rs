//! What the fused CPU ops (LayerNorm, softmax, GELU, Linear, cross-entropy, the volume's pair
//! stage) share: borrowing a contiguous tensor's data in place.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor, WithDType};

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

/// Runs `f` on the f32 elements of the CPU tensors `ts`, borrowed in place (a backward pass
/// reading its op's inputs); an error naming `op` for a tensor elsewhere, of another dtype
/// or strided.
pub(crate) fn with_host<const N: usize, R>(
    ts: [&Tensor; N],
    op: &str,
    f: impl FnOnce([&[f32]; N]) -> Result<R>,
) -> Result<R> {
    let guards = ts.map(|t| t.storage_and_layout());
    let mut host: [&[f32]; N] = [&[]; N];
    for (h, (storage, layout)) in host.iter_mut().zip(&guards) {
        *h = match &**storage {
            Storage::Cpu(s) => slice(s, layout, op)?,
            other => candle_core::bail!(
                "{op}: CPU tensors only, got {:?}",
                other.device().location()
            ),
        };
    }
    f(host)
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
