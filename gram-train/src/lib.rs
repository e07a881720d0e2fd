//! # gram-train — GRAM training on Candle
//!
//! - [`volume`]: the differentiable volume matrix (Candle matmuls + a custom op whose forward
//!   and backward are gram-nostd's `GramFactor`).
//! - [`losses`]: GRAM, DAM hard-negative sampling, pairwise InfoNCE and Symile baselines.
//! - [`model`]: projection heads, learnable temperature, DAM head.
//! - [`optim`]: checkpointable AdamW, warmup + cosine schedule, clipping.
//! - [`data`], [`synth`]: the feature-dataset format and a synthetic generator in it.
//! - [`train`], [`checkpoint`]: `fit` (seeded, resumable, atomic checkpoints), `embed`.
//! - [`demo`]: the end-to-end comparison behind `gram-train demo`.

pub mod checkpoint;
pub mod data;
pub mod demo;
pub mod losses;
pub mod model;
pub mod optim;
pub mod synth;
pub mod train;
pub mod volume;
