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

/// The (used, reserved) bytes of `dev`'s current stream-ordered memory pool, after the stream
/// is idle: used = live tensors, reserved = that plus freed memory kept for reuse. So growth of
/// `used` over steps is a leak of ours, growth of `reserved` alone the pool's caching. None on
/// the CPU, without the `cuda` feature, or where the driver does not answer.
pub fn pool_bytes(dev: &Device) -> Option<(u64, u64)> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = dev {
        use candle_core::cuda_backend::cudarc::driver::{result, sys};
        d.cuda_stream().synchronize().ok()?;
        let ctx = d.cuda_stream().context().clone();
        ctx.bind_to_thread().ok()?;
        // SAFETY: cu_device is the context's own device handle.
        let pool = unsafe { result::device::get_mem_pool(ctx.cu_device()) }.ok()?;
        let read = |attr: sys::CUmemPool_attribute| -> Option<u64> {
            let mut v = 0u64;
            // SAFETY: both attributes read below are cuuint64_t (the driver API's
            // documentation); `pool` is the device's current pool, valid while `ctx` lives.
            unsafe { result::mem_pool::get_attribute(pool, attr, (&mut v as *mut u64).cast()) }
                .ok()?;
            Some(v)
        };
        return Some((
            read(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?,
            read(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?,
        ));
    }
    let _ = dev;
    None
}
