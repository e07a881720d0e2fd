#![doc = include_str!("../README.md")]
//!
//! ## gram-nostd — the volume math of GRAM, without std and without a heap
//!
//! GRAM (Cicchetti et al., ICLR 2025) scores how well k modality embeddings of one sample agree
//! by the volume of the parallelotope they span: with A = [v1 … vk], **vol = sqrt(det AᵀA)**.
//! Small volume = aligned. This crate is the single source of truth for that number; the CPU,
//! GPU and training backends of the workspace are tested for parity against it.
//!
//! - [`volume`], [`log_volume`], [`gram_determinant`]: from the vectors (f32 or f64), accurate
//!   to about 1e-10 relative down to normalised volumes of 1e-8, never NaN, exactly 0 for
//!   k > n or a zero vector, no overflow at any magnitude.
//! - [`GramFactor`]: from a Gram matrix the caller already has: equilibrated, pivoted LDLᵀ in
//!   f64, determinant, volume and a condition number.
//! - [`Candidate`], [`score_row`]: factor a candidate tuple once, then score many anchors
//!   from k−1 dot products each, with an a-posteriori error bound and an exact fallback.
//!   Candidates serialise to a checked byte format ([`Candidate::to_bytes`]) for flashing.
//! - [`Arithmetic`]: f64 dot products where the FPU has f64; on microcontrollers without it
//!   (the default there) an f32 path with certified bounds ([`single`]): ≤ 1e-6 relative,
//!   about 0.4× the instructions of the naive float32 recipe on a Cortex-M4F.
//! - [`gram_loss`]: the symmetric contrastive loss over −V/τ with label smoothing, and its
//!   gradient; [`rank_of`], [`summarize_ranks`]: retrieval metrics.
//! - [`span_basis`], [`volume_sq_by_basis`]: a candidate's modalities as an orthonormal basis
//!   of their span and w = vol², so that vol(a, M)² = w·(‖a‖² − Σ(a·u_t)²) for any anchor:
//!   what an index over candidates generates and bounds candidates from.
//! - [`naive`]: the published float32 recipe, for comparisons.
//!
//! Nothing allocates: inputs are slices, outputs go to caller-provided buffers, and all k×k
//! work lives in fixed 16×16 arrays (a [`Candidate`] is ~1.1 KiB). Every fallible function
//! returns [`GramError`]; none panics on any input.
#![cfg_attr(not(test), no_std)]
// No unsafe code but one audited SSE2 intrinsic call (candidate.rs, `sqrt_vectorisable`) and
// the f32 FPU instructions of `fpu.rs` (Cortex-M, RISC-V).
#![deny(unsafe_code)]

mod candidate;
mod candidate_bytes;
pub mod dd;
pub mod dot;
mod element;
mod error;
#[cfg(any(gram_arm_vfp4, gram_riscv_f))]
mod fpu;
mod gram;
mod ldl;
mod loss;
pub mod naive;
mod rank;
mod score;
pub mod single;
mod span;
pub mod uniform;
mod volume;

pub use candidate::{Candidate, PairVolume};
pub use element::{Element, max_abs_checked, pow2_scale};
pub use error::GramError;
pub use gram::GramFactor;
pub use loss::{LossParts, gram_loss};
pub use rank::{RankSummary, Ties, rank_of, rank_with, recall_at_k, summarize_ranks};
pub use score::{
    FAST_PATH_TOLERANCE, SINGLE_PATH_TOLERANCE, ScoreStats, candidate_at, dot_f64_rel_err,
    score_pair, score_row, score_row_by, score_row_with, to_f32,
};
pub use single::Arithmetic;
pub use span::{span_basis, volume_sq_by_basis};
pub use volume::{gram_determinant, log_volume, volume};

/// Largest number of vectors (modalities, anchor included) in one volume.
pub const MAX_K: usize = 16;
