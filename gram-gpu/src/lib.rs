#![doc = include_str!("../README.md")]
//!
//! ## gram-gpu — GRAM volumes on any GPU with wgpu and WGSL
//!
//! Vulkan, Metal, DX12, or WebGPU in a browser (wasm32). [`GpuContext`] sets up the device and
//! compute pipelines; [`GpuScorer`] factors candidate tuples once (on the host, in f64, with
//! gram-nostd) and scores anchors against them: [`GpuScorer::volume_matrix`] for the full
//! matrix, [`GpuScorer::top_k`] for the k smallest volumes per anchor without materialising
//! it. Inputs beyond one binding or dispatch are tiled automatically; no adapter, device loss
//! and oversized inputs are [`GpuError`]s, never panics.
//!
//! Shaders (`src/shaders/*.wgsl`): the fused volume kernel — `volume_common.wgsl` (bindings and
//! the per-pair epilogue with its error bound) with one of two main loops: `volume_staged.wgsl`
//! (tiles through workgroup memory, for GPUs) or the direct loop `kernel.rs` writes out unrolled
//! (vec4 loads straight from storage, anchors shared across subgroups where there are any; for
//! CPU-type adapters), specialised per k by `kernel.rs` — and `topk.wgsl` (running per-anchor
//! top-m over the kernel's output, on the device).

mod buffers;
mod device;
mod error;
mod kernel;
mod prepare;
mod scorer;

pub use device::GpuContext;
pub use error::GpuError;
pub use kernel::KernelVariant;
pub use scorer::{GPU_TOLERANCE, GpuScorer, MAX_TOP_K, kernel_dot_rel_err, top_k, volume_matrix};
