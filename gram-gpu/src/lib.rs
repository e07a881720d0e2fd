//! # gram-gpu — GRAM volumes on any GPU with wgpu and WGSL
//!
//! Vulkan, Metal, DX12, or WebGPU in a browser (wasm32). [`GpuContext`] sets up the device and
//! compute pipelines; [`GpuScorer`] factors candidate tuples once (on the host, in f64, with
//! gram-nostd) and scores anchors against them: [`GpuScorer::volume_matrix`] for the full
//! matrix, [`GpuScorer::top_k`] for the k smallest volumes per anchor without materialising
//! it. Inputs beyond one binding or dispatch are tiled automatically; no adapter, device loss
//! and oversized inputs are [`GpuError`]s, never panics.
//!
//! Shaders (`src/shaders/*.wgsl`): `residual.wgsl` (per-pair projection residual, workgroup
//! tiles staged through workgroup memory) and `topk.wgsl` (running per-anchor top-k).

mod buffers;
mod device;
mod error;
mod scorer;

pub use device::GpuContext;
pub use error::GpuError;
pub use scorer::{GpuScorer, MAX_TOP_K, top_k, volume_matrix};
