//! What is trained: the differentiable volume matrix ([`volume`]), the contrastive losses
//! ([`losses`]), the encoders ([`encoders`]) and the GRAM model that joins them ([`gram`]).
//!
//! May import: [`crate::ops`].

pub mod encoders;
pub mod gram;
pub mod losses;
pub mod missing;
pub mod volume;
