#![doc = include_str!("../README.md")]
//!
//! ## gram-train — GRAM training on Candle
//!
//! The crate's rooms, from the bottom floor up; each imports only from the ones listed before it
//! (and [`error`], [`config`], [`device`], [`fp_mode`], which every floor may use):
//!
//! - [`ops`]: fused CPU ops with their own backward passes (Linear, GELU, LayerNorm, softmax,
//!   FlashAttention, label-smoothed cross-entropy), recomputation for other devices, precision.
//! - [`model`]: the differentiable volume, the losses, the encoders (BERT, CLIP ViT, AST) and
//!   the GRAM model (encoders → projection heads, temperature, DAM head).
//! - [`data`]: the feature-dataset format and its synthetic generator, JSONL raw datasets and
//!   their tiny generator, batch sources with background prefetch.
//! - [`train`]: model construction, one step, AdamW, checkpoints, data parallelism, the
//!   resumable `fit` loop, embedding for validation and snapshots.
//! - [`eval`]: what reads a finished checkpoint: `embed` to `.npy`, evaluation with DAM
//!   re-ranking.
//! - [`demo`]: the end-to-end comparison behind `gram-train demo`.

pub mod config;
pub mod data;
pub mod demo;
pub mod device;
pub mod error;
pub mod eval;
pub mod fp_mode;
pub mod model;
pub mod ops;
pub mod process;
pub mod train;
