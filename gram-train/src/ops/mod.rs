//! Fused ops: one Candle custom op per layer function, each with its own backward pass, so the
//! autograd graph keeps only what the backward needs (inputs, not intermediates), plus the
//! math helpers they share. CPU f32 runs our loops; other devices and dtypes run Candle tensor
//! ops, recomputed in the backward where keeping them would cost memory ([`recompute`]).
//!
//! May import: nothing else of this crate but [`crate::error`]. Everything above builds on it.

pub mod attention;
pub(crate) mod cpu_op;
#[cfg(feature = "cuda")]
mod cuda_rows;
pub mod fastmath;
pub mod gelu;
pub(crate) mod gemm_cpu;
pub mod layer_norm;
pub mod linear_cpu;
pub mod precision;
pub mod recompute;
pub mod simd;
pub mod smoothed_ce;
pub mod softmax;
pub mod subnormals;
