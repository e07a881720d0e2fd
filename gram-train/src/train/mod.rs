//! Training: model construction ([`build`]), one step ([`step`]), the optimizer ([`optim`]),
//! checkpoints ([`checkpoint`]), data parallelism ([`distributed`], `nccl` (with the `nccl` feature)), embedding for
//! validation and snapshots ([`embed`], [`snapshots`]), and the loop that runs them ([`fit`]).
//!
//! May import: [`crate::data`], [`crate::model`], [`crate::ops`].

pub mod build;
pub mod checkpoint;
pub mod distributed;
pub mod embed;
pub mod fit;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod optim;
pub mod snapshots;
pub mod step;
