//! `gram-train embed`: a checkpoint's embeddings of a split, written as `.npy` files that
//! `gram eval`, `gram search` and `gram report` read.

use crate::data::source::open_source;
use crate::error::Error;
use crate::train::checkpoint::load_checkpoint;
use crate::train::embed::embed_source;
use candle_core::Device;
use std::path::Path;

/// Write `<modality>.npy` unit embeddings of `split` for `gram eval` (raw datasets: of the
/// samples kept, whose manifest indices go to `indices.npy` when any were skipped).
pub fn embed(
    checkpoint: &Path,
    data: &Path,
    split: &str,
    skip_bad: bool,
    out: &Path,
    dev: &Device,
) -> Result<(), Error> {
    let loaded = load_checkpoint(checkpoint, dev)?;
    let model = &loaded.model;
    let source = open_source(data, split, &model.config, &loaded.tokenizers, skip_bad)?;
    let (emb, kept) = embed_source(model, source.as_ref(), dev)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    for (name, e) in model.config.modalities.iter().zip(&emb) {
        let p = out.join(format!("{name}.npy"));
        gram_host::output::write_npy_f32(&p, &[kept.len(), model.config.embed_dim], e)
            .map_err(|e| Error::io(&p, e))?;
    }
    if kept.len() != source.len() {
        let p = out.join("indices.npy");
        let idx: Vec<u32> = kept.iter().map(|&i| i as u32).collect();
        gram_host::output::write_npy_u32(&p, &[idx.len()], &idx).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}
