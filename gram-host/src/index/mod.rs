//! Search indexes: candidates factored once, stored, and searched many times.
//!
//! An index is a directory: `manifest.json` and one or more shard files
//! (`shard-NNNNN.safetensors`). A shard holds a contiguous range of candidates: their vectors
//! (`modality.<t>`, f32 [rows, D], kept so that the GEMMs and the pairs the error bound flags
//! are computed from the original values) and their factors (`factors`, f64 [rows, stride]:
//! gram-nostd's candidate record — vol(M), the pivoted R⁻ᵀ, the error-bound weights — and the
//! norm range the GEMM path checks). The manifest says what the index is (format, version, k,
//! D, the global row range, the source files) and gives each shard's size and xxh3-64
//! checksum; every search checks both, so a corrupt, truncated, foreign or mismatched index is
//! refused with one message instead of being searched.
//!
//! Candidate ids are global rows of the source files: an index built from rows
//! `first..first + n` reports hits as those rows, so indexes of disjoint row ranges (built on
//! other machines or at other times) are searched together by merging their per-shard top-k,
//! with exactly the hits of one index over all rows ([`crate::cpu::topk`]).

pub mod ann;
mod build;
mod manifest;
mod open;
pub(crate) mod search;

pub use build::{BuildOptions, BuildReport, build};
pub use manifest::{AnnEntry, Manifest, ShardEntry};
pub use open::{Index, Shard};
pub use search::{SearchReport, search_keys};

/// File names inside an index directory.
pub const MANIFEST: &str = "manifest.json";

/// Shard file name of shard `s`.
pub fn shard_file(s: usize) -> String {
    format!("shard-{s:05}.safetensors")
}

/// Approximate-search file name of shard `s`.
pub fn ann_file(s: usize) -> String {
    format!("ann-{s:05}.safetensors")
}

/// Tensor name of modality `t` in a shard.
pub fn modality_tensor(t: usize) -> String {
    format!("modality.{t}")
}

/// Tensor name of the candidate factors in a shard.
pub const FACTORS: &str = "factors";

/// The checksum the manifest records: xxh3-64 of the whole shard file, as 16 hex digits. Not
/// cryptographic: it detects damage (bit rot, truncation, a partial copy), not tampering.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Write `tensors` as a safetensors file at `path` and return its size and [`checksum`].
pub(crate) fn write_checked(
    path: &std::path::Path,
    tensors: Vec<(String, safetensors::tensor::TensorView<'_>)>,
) -> Result<(u64, String), crate::error::Error> {
    let fail = |e: &dyn std::fmt::Display| {
        crate::error::Error::io(path.display(), format!("cannot write: {e}"))
    };
    safetensors::serialize_to_file(tensors, None, path).map_err(|e| fail(&e))?;
    let f = std::fs::File::open(path).map_err(|e| fail(&e))?;
    // SAFETY: read-only map of the file this process has just written and nobody else knows.
    let bytes = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| fail(&e))?;
    Ok((bytes.len() as u64, checksum(&bytes)))
}
