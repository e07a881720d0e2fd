//! # gram-train — GRAM training on Candle
//!
//! - [`volume`]: the differentiable volume matrix (Candle matmuls + a custom op whose forward
//!   and backward are gram-nostd's `GramFactor`).
//! - [`losses`]: GRAM, DAM hard-negative sampling, pairwise InfoNCE and Symile baselines.
//! - [`attention`]: multi-head attention as one op (FlashAttention on the CPU, with backward);
//!   [`recompute`]: the same memory contract elsewhere by recomputing it in the backward.
//! - [`encoders`]: BERT text, CLIP ViT vision (images, video frames), AST audio (log-mel).
//! - [`model`]: encoders → projection heads, learnable temperature, DAM head.
//! - [`precision`]: f32 or bf16 matmuls in the encoders and heads (autocast-like).
//! - [`optim`]: checkpointable AdamW, warmup + cosine schedule, clipping.
//! - [`data`], [`synth`]: the feature-dataset format and a synthetic generator in it.
//! - [`raw`], [`rawgen`], [`source`]: JSONL raw datasets, a tiny generator, batching with
//!   background prefetch.
//! - [`distributed`]: data parallelism (gather, local loss, gradient all-reduce), world size 1
//!   included.
//! - [`train`], [`checkpoint`]: `fit` (seeded, resumable, atomic checkpoints, `--init-from`),
//!   `embed`; [`rerank`]: evaluation with DAM re-ranking.
//! - [`device`]: opening a CUDA device for training; [`alloc`]: the binaries' allocator setting.
//! - [`demo`]: the end-to-end comparison behind `gram-train demo`.

pub mod alloc;
pub mod attention;
pub mod checkpoint;
pub mod config;
mod cpu_op;
pub mod data;
pub mod demo;
pub mod device;
pub mod distributed;
pub mod encoders;
pub mod fastmath;
pub mod fit;
pub mod gelu;
pub mod linear_cpu;
pub mod losses;
pub mod model;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod optim;
pub mod precision;
pub mod raw;
pub mod rawgen;
pub mod recompute;
pub mod rerank;
pub mod smoothed_ce;
pub mod snapshots;
pub mod source;
pub mod synth;
pub mod train;
pub mod volume;
