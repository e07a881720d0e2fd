//! `manifest.json`: what an index is and what its shards must be.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FORMAT: &str = "gram-index";
pub const VERSION: u32 = 1;

/// The manifest of an index directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `FORMAT`.
    pub format: String,
    /// `VERSION`; other versions are refused.
    pub version: u32,
    /// Vectors per tuple, anchor included (modalities + 1).
    pub k: usize,
    /// Vector length D.
    pub dim: usize,
    /// Global row of the first candidate (its id in search hits).
    pub first_row: u64,
    /// Number of candidates.
    pub rows: u64,
    /// The files the modalities were read from, in order, and their row counts.
    pub sources: Vec<Source>,
    pub shards: Vec<ShardEntry>,
    /// The program that wrote it.
    pub created_by: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub file: String,
    pub rows: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// File name inside the index directory.
    pub file: String,
    pub first_row: u64,
    pub rows: u64,
    pub bytes: u64,
    /// [`super::checksum`] of the file.
    pub xxh3_64: String,
    /// The shard's approximate-search file (`gram index build --ann`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ann: Option<AnnEntry>,
}

/// A file beside a shard, its size and checksum checked like the shard's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnEntry {
    pub file: String,
    pub bytes: u64,
    pub xxh3_64: String,
}

impl Manifest {
    /// Read and check `dir/manifest.json`: format, version, and shards that tile the rows.
    pub fn read(dir: &Path) -> Result<Manifest, Error> {
        let shown = dir.display();
        let path = dir.join(super::MANIFEST);
        if !dir.is_dir() {
            return Err(Error::data(
                &shown,
                "not a directory (an index is a directory)",
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::data(
                &shown,
                format!("not a gram index ({}: {e})", super::MANIFEST),
            )
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::data(path.display(), format!("not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(Error::data(
                path.display(),
                format!("not a gram index manifest (format is not \"{FORMAT}\")"),
            ));
        }
        if value.get("version").and_then(|v| v.as_u64()) != Some(VERSION as u64) {
            return Err(Error::data(
                path.display(),
                format!(
                    "index format version {} is not supported (this gram reads version {VERSION})",
                    value
                        .get("version")
                        .map_or("?".to_string(), |v| v.to_string())
                ),
            ));
        }
        let m: Manifest = serde_json::from_value(value)
            .map_err(|e| Error::data(path.display(), format!("malformed manifest: {e}")))?;
        m.check()
            .map_err(|p| Error::data(path.display(), p.to_string()))?;
        Ok(m)
    }

    /// The invariants every index keeps.
    fn check(&self) -> Result<(), String> {
        if self.k < 2 || self.k > gram_nostd::MAX_K {
            return Err(format!("k = {} outside 2..={}", self.k, gram_nostd::MAX_K));
        }
        if self.dim == 0 || self.rows == 0 {
            return Err("an index of no rows or dimension 0".into());
        }
        if self.sources.len() != self.k - 1 {
            return Err(format!("{} sources for k = {}", self.sources.len(), self.k));
        }
        if self.first_row + self.rows > u32::MAX as u64 + 1 {
            return Err("rows beyond 2^32 (hit ids are uint32)".into());
        }
        let mut next = self.first_row;
        for s in &self.shards {
            if s.first_row != next || s.rows == 0 {
                return Err(format!(
                    "{}: rows do not follow the previous shard's",
                    s.file
                ));
            }
            let files = std::iter::once(&s.file).chain(s.ann.as_ref().map(|a| &a.file));
            if files
                .into_iter()
                .any(|f| f.contains(['/', '\\']) || f.starts_with('.'))
            {
                return Err(format!(
                    "{}: a shard must be a file inside the index",
                    s.file
                ));
            }
            next += s.rows;
        }
        if next != self.first_row + self.rows {
            return Err(format!(
                "the shards hold {} rows, the manifest says {}",
                next - self.first_row,
                self.rows
            ));
        }
        Ok(())
    }
}
