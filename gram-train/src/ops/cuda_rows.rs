//! Launches of candle-kernels' row kernels (`softmax_f32`, `layernorm_f32`: what candle-nn's
//! fused, backward-less `softmax_last_dim` and `layer_norm` run) inside our ops, which add the
//! backward passes.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{WrapErr, kernels};
use candle_core::{CudaStorage, Layout, Result, Shape};

fn view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.as_cuda_slice::<f32>()?.slice(a..b)),
        None => candle_core::bail!("{what}: needs contiguous f32"),
    }
}

/// (rows, columns) of a row-major tensor over its last dimension.
fn shape(l: &Layout) -> (usize, usize) {
    let cols = l.shape().dims().last().copied().unwrap_or(1).max(1);
    (l.shape().elem_count() / cols, cols)
}

pub fn softmax(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
    let src = view(s, l, "softmax")?;
    let ((rows, cols), dev) = (shape(l), s.device());
    let func = dev.get_or_load_func("softmax_f32", &kernels::REDUCE)?;
    // SAFETY: every element is written by the kernel.
    let dst = unsafe { dev.alloc::<f32>(rows * cols)? };
    let mut b = func.builder();
    let n = cols as i32;
    b.arg(&src).arg(&dst).arg(&n);
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (1, 32, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the kernel's signature (src, dst, ncols) as candle-nn launches it.
    unsafe { b.launch(cfg) }.w()?;
    Ok((
        CudaStorage::wrap_cuda_slice(dst, dev.clone()),
        l.shape().clone(),
    ))
}

pub fn layer_norm(
    xs: &CudaStorage,
    xl: &Layout,
    ws: &CudaStorage,
    wl: &Layout,
    bs: &CudaStorage,
    bl: &Layout,
    eps: f32,
) -> Result<(CudaStorage, Shape)> {
    let (x, w, bias) = (
        view(xs, xl, "layer norm")?,
        view(ws, wl, "layer norm weight")?,
        view(bs, bl, "layer norm bias")?,
    );
    let ((rows, cols), dev) = (shape(xl), xs.device());
    if w.len() != cols || bias.len() != cols {
        candle_core::bail!("layer norm: last dimension {cols} differs from the weight's")
    }
    let block = if cols < 1024 { 32 } else { 1024 };
    let func = dev.get_or_load_func("layernorm_f32", &kernels::REDUCE)?;
    // SAFETY: every element is written by the kernel.
    let dst = unsafe { dev.alloc::<f32>(rows * cols)? };
    let (n, bsz) = (cols as i32, block as i32);
    let mut b = func.builder();
    b.arg(&x)
        .arg(&dst)
        .arg(&w)
        .arg(&bias)
        .arg(&n)
        .arg(&bsz)
        .arg(&eps);
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the kernel's signature (src, dst, alpha, beta, ncols, block_size, eps) as
    // candle-nn launches it.
    unsafe { b.launch(cfg) }.w()?;
    Ok((
        CudaStorage::wrap_cuda_slice(dst, dev.clone()),
        xl.shape().clone(),
    ))
}
