//! Where samples come from: the feature-dataset format ([`features`]) and its synthetic
//! generator ([`synth`]), JSONL raw datasets ([`raw`]) and their generator ([`rawgen`]), and
//! the batch sources training and embedding read, with background prefetch ([`source`]), and
//! the batch they hand over ([`batch`]). Imports go one way: `source` → `raw` → `batch`.
//!
//! May import: [`crate::model`] (the encoders' input preprocessing and batch types), [`crate::ops`].

pub mod batch;
pub mod features;
pub mod missing;
pub mod raw;
pub mod rawgen;
pub mod source;
pub mod synth;
