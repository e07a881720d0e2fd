//! Feature datasets (DESIGN.md): a directory with `dataset.json`
//! (`{"modalities":["text","video","audio"],"anchor":"text"}`) and one float32 `.npy` per
//! split and modality, `<split>_<modality>.npy` [N, D_modality], rows aligned across
//! modalities. Reading goes through gram-host's validated loader.

use crate::error::Error;
use gram_host::input::{self, Matrix};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub modalities: Vec<String>,
    pub anchor: String,
}

/// One split: a matrix per modality, in `info.modalities` order.
pub struct Split {
    pub info: DatasetInfo,
    pub features: Vec<Matrix>,
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

    /// Rows `idx` of modality `t`, gathered into one row-major buffer.
    pub fn gather(&self, t: usize, idx: &[usize]) -> Vec<f32> {
        let m = &self.features[t];
        let mut out = Vec::with_capacity(idx.len() * m.cols);
        for &i in idx {
            out.extend_from_slice(m.row(i));
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
    Ok(info)
}

pub fn split_path(dir: &Path, split: &str, modality: &str) -> PathBuf {
    dir.join(format!("{split}_{modality}.npy"))
}

/// Load a split; every modality must have the same number of rows.
pub fn load_split(dir: &Path, split: &str) -> Result<Split, Error> {
    let info = read_info(dir)?;
    let mut features = Vec::new();
    for m in &info.modalities {
        let p = split_path(dir, split, m);
        features.push(input::load(&p.to_string_lossy())?);
    }
    let n = features[0].rows;
    if let Some(bad) = features.iter().find(|f| f.rows != n) {
        return Err(Error::config(format!(
            "{}: {} rows, but {} has {n} (rows must align)",
            bad.name, bad.rows, features[0].name
        )));
    }
    Ok(Split { info, features })
}
