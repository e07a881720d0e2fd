//! What reads a finished checkpoint: `gram-train embed` ([`export`]) and `gram-train eval`,
//! retrieval by volume with optional DAM re-ranking ([`rerank`]).
//!
//! May import: [`crate::train`] and everything below it.

pub mod export;
pub mod rerank;
