//! Opening the device a run trains on.

use candle_core::{Device, Result};

/// CUDA device `ordinal` for training, with cudarc's per-tensor event tracking switched off.
///
/// Why: cudarc records and waits on a CUDA event for every tensor a kernel touches so that
/// tensors can move between streams safely; Candle runs everything on the device's one
/// stream, where stream order already guarantees it, and the events cost host time on each of
/// the hundreds of small kernels of a training step. Without the `cuda` feature this returns
/// Candle's "not compiled with cuda" error. `GRAM_CUDA_EVENTS=1` keeps the tracking on (for
/// comparisons).
pub fn cuda(ordinal: usize) -> Result<Device> {
    let dev = Device::new_cuda(ordinal)?;
    #[cfg(feature = "cuda")]
    if let (Device::Cuda(d), false) = (&dev, std::env::var_os("GRAM_CUDA_EVENTS").is_some()) {
        // SAFETY: one stream per device (Candle's), and tensors never cross to another stream
        // in gram-train (NCCL collectives stage through the host).
        unsafe { d.disable_event_tracking() };
    }
    Ok(dev)
}
