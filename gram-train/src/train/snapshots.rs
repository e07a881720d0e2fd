//! Training snapshots for `gram report --snapshots`: the unit embeddings of one split, written
//! as `OUT/snapshots/<step>_<modality>.npy` (float32 [n, embed_dim], each file atomically) at
//! step 0, every `snapshot_every` steps and at the last step.

use crate::data::source::Source;
use crate::error::Error;
use crate::model::gram::GramModel;
use crate::train::embed::embed_source;
use candle_core::Device;
use std::path::{Path, PathBuf};

/// Where and when a run writes snapshots, and the split it embeds.
pub struct Snapshots {
    every: u64,
    last: u64,
    dir: PathBuf,
    source: Box<dyn Source>,
}

impl Snapshots {
    /// `every` = 0 means no snapshots (`None`).
    pub fn new(every: u64, last: u64, out: &Path, source: Box<dyn Source>) -> Option<Snapshots> {
        (every > 0).then(|| Snapshots {
            every,
            last,
            dir: out.join("snapshots"),
            source,
        })
    }

    /// Whether step `step` (steps done) gets a snapshot.
    pub fn due(&self, step: u64) -> bool {
        step == 0 || step.is_multiple_of(self.every) || step == self.last
    }

    /// Embed the split with `model` and write one file per modality.
    pub fn write(&self, model: &GramModel, dev: &Device, step: u64) -> Result<(), Error> {
        let (emb, _) = embed_source(model, self.source.as_ref(), dev)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::data(&self.dir, e))?;
        let dim = model.config.embed_dim;
        for (m, e) in model.config.modalities.iter().zip(&emb) {
            let path = self.dir.join(format!("{step}_{m}.npy"));
            gram_host::output::write_npy_f32(&path, &[e.len() / dim, dim], e)
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}
