//! Feature datasets (DESIGN.md): a directory with `dataset.json`
//! (`{"modalities":["text","video","audio"],"anchor":"text"}`) and one float32 `.npy` per
//! split and modality, `<split>_<modality>.npy` [N, D_modality], rows aligned across
//! modalities. Reading goes through gram-host's validated loader.
//!
//! Incomplete samples: `dataset.json` may list modalities that samples may lack
//! (`"missing": ["audio"]`); in their files a row of NaN marks a missing vector, as for the `gram`
//! CLI's `--missing`. Any other NaN or infinity, a NaN row elsewhere, and a sample whose anchor is
//! missing are refused with the file and row.

use crate::error::Error;
use gram_host::input::{self, Matrix};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub modalities: Vec<String>,
    pub anchor: String,
    /// Modalities a sample may lack (never the anchor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl DatasetInfo {
    /// Whether samples may lack modality `m`.
    pub fn may_miss(&self, m: &str) -> bool {
        self.missing.iter().any(|x| x == m)
    }
}

/// One split: a matrix per modality, in `info.modalities` order.
pub struct Split {
    pub info: DatasetInfo,
    pub features: Vec<Matrix>,
    /// Per modality, per row: the vector is missing (its row is NaN in the file).
    pub missing: Vec<Vec<bool>>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.features[0].rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dims(&self) -> Vec<usize> {
        self.features.iter().map(|m| m.cols).collect()
    }

    /// Rows `idx` of modality `t`, gathered into one row-major buffer; a missing row is zeros
    /// (an encoder input that is finite, so that masking its output leaves no NaN behind).
    pub fn gather(&self, t: usize, idx: &[usize]) -> Vec<f32> {
        let m = &self.features[t];
        let mut out = Vec::with_capacity(idx.len() * m.cols);
        for &i in idx {
            if self.missing[t][i] {
                out.resize(out.len() + m.cols, 0.0);
            } else {
                out.extend_from_slice(m.row(i));
            }
        }
        out
    }
}

pub fn read_info(dir: &Path) -> Result<DatasetInfo, Error> {
    let path = dir.join("dataset.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::data(&path, format!("cannot read: {e}")))?;
    let info: DatasetInfo = serde_json::from_str(&text).map_err(|e| Error::data(&path, e))?;
    if info.modalities.len() < 2 || info.modalities.len() > gram_nostd::MAX_K {
        return Err(Error::data(
            &path,
            format!("need 2..=16 modalities, found {}", info.modalities.len()),
        ));
    }
    if !info.modalities.contains(&info.anchor) {
        return Err(Error::data(
            &path,
            format!("anchor '{}' is not one of the modalities", info.anchor),
        ));
    }
    if let Some(m) = info.missing.iter().find(|m| !info.modalities.contains(m)) {
        return Err(Error::data(
            &path,
            format!("\"missing\": '{m}' is not one of the modalities"),
        ));
    }
    if info.may_miss(&info.anchor) {
        return Err(Error::data(
            &path,
            format!(
                "\"missing\": the anchor '{}' cannot be missing (an incomplete sample aligns to its anchor)",
                info.anchor
            ),
        ));
    }
    Ok(info)
}

pub fn split_path(dir: &Path, split: &str, modality: &str) -> PathBuf {
    dir.join(format!("{split}_{modality}.npy"))
}

/// Load a split; every modality must have the same number of rows. In a modality
/// `dataset.json` lists as `missing`, a row of NaN is a missing vector; elsewhere it is refused.
pub fn load_split(dir: &Path, split: &str) -> Result<Split, Error> {
    let info = read_info(dir)?;
    let (mut features, mut missing) = (Vec::new(), Vec::new());
    for m in &info.modalities {
        let p = split_path(dir, split, m);
        let spec = p.to_string_lossy();
        let (f, miss) = input::load_allowing_missing(&spec)?;
        if let Some(r) = miss.iter().position(|&x| x).filter(|_| !info.may_miss(m)) {
            return Err(Error::data(
                &p,
                format!(
                    "row {r} is NaN (a missing vector), but dataset.json does not list '{m}' under \"missing\""
                ),
            ));
        }
        features.push(f);
        missing.push(miss);
    }
    let n = features[0].rows;
    if let Some(bad) = features.iter().find(|f| f.rows != n) {
        return Err(Error::config(format!(
            "{}: {} rows, but {} has {n} (rows must align)",
            bad.name, bad.rows, features[0].name
        )));
    }
    let a = info
        .modalities
        .iter()
        .position(|m| *m == info.anchor)
        .expect("checked");
    let others = |i: usize| {
        (0..missing.len())
            .filter(move |&t| t != a)
            .map(move |t| (t, i))
    };
    if let Some(r) = (0..n).find(|&i| others(i).all(|(t, i)| missing[t][i])) {
        let p = split_path(
            dir,
            split,
            &info.modalities[(a + 1) % info.modalities.len()],
        );
        return Err(Error::data(
            &p,
            format!("row {r} lacks every modality but the anchor (nothing to align it to)"),
        ));
    }
    Ok(Split {
        info,
        features,
        missing,
    })
}
