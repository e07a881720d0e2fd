//! Embedding a data source with a model, batch by batch without autograd, and retrieval by
//! volume over the result: what validation, snapshots and the evaluation commands share.

use crate::data::features::Split;
use crate::data::source::{Source, prefetched};
use crate::error::Error;
use crate::model::encoders::Kind;
use crate::model::gram::GramModel;
use candle_core::Device;
use gram_host::cpu::Scorer;
use gram_host::metrics::{Retrieval, evaluate};

/// Unit embeddings of every (good) sample of `source`, per modality, in chunks without
/// autograd; and the sample indices they belong to.
pub fn embed_source(
    model: &GramModel,
    source: &dyn Source,
    dev: &Device,
) -> Result<(Vec<Vec<f32>>, Vec<usize>), Error> {
    let n = source.len();
    let encoded = model
        .config
        .encoders
        .iter()
        .any(|e| e.kind != Kind::Features);
    let chunk = if encoded { 64 } else { 1024 };
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); model.heads.len()];
    let mut kept = Vec::with_capacity(n);
    let plans = (0..n)
        .step_by(chunk)
        .map(|s| (s..(s + chunk).min(n)).collect());
    prefetched(source, plans, 2, |batch| {
        let (inputs, idx) = batch?;
        if idx.is_empty() {
            return Ok(());
        }
        let emb = model.embed(&inputs, dev)?;
        for (o, e) in out.iter_mut().zip(emb) {
            o.extend(e.detach().flatten_all().and_then(|e| e.to_vec1::<f32>())?);
        }
        kept.extend(idx);
        Ok::<(), Error>(())
    })?;
    Ok((out, kept))
}

/// [`embed_source`] of a feature split (every row).
pub fn embed_split(model: &GramModel, split: &Split, dev: &Device) -> Result<Vec<Vec<f32>>, Error> {
    Ok(embed_source(model, split, dev)?.0)
}

/// Retrieval by volume (gram-host's evaluator) of embeddings in `info.modalities` order.
pub fn retrieval(embeddings: &[Vec<f32>], anchor: usize, dim: usize) -> Result<Retrieval, Error> {
    let n = embeddings[anchor].len() / dim;
    let others: Vec<&[f32]> = embeddings
        .iter()
        .enumerate()
        .filter(|(t, _)| *t != anchor)
        .map(|(_, e)| e.as_slice())
        .collect();
    let scorer = Scorer::new(&others, n, dim)?;
    evaluate(&scorer, &embeddings[anchor], dim)
        .map(|(r, _)| r)
        .map_err(Error::from)
}

pub fn retrieval_json(r: &Retrieval) -> serde_json::Value {
    gram_host::commands::retrieval_json(r)
}
