//! Embedding a data source with a model, batch by batch without autograd, and retrieval by
//! volume over the result: what validation, snapshots and the evaluation commands share.

use crate::data::features::Split;
use crate::data::source::{Source, prefetched};
use crate::error::Error;
use crate::model::encoders::Kind;
use crate::model::gram::GramModel;
use candle_core::Device;
use gram_host::cpu::Scorer;
use gram_host::input::Matrix;
use gram_host::metrics::{Retrieval, evaluate};
use gram_host::missing::MissingRule;
use std::borrow::Cow;

/// Unit embeddings of every (good) sample of `source`, per modality, in chunks without
/// autograd; and the sample indices they belong to. A sample lacking a modality gets a row of
/// NaN there (what `gram eval --missing …` reads as a missing vector).
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
        let batch = batch?;
        if batch.kept.is_empty() {
            return Ok(());
        }
        let emb = model.embed(&batch.inputs, dev)?;
        for ((o, e), lacks) in out.iter_mut().zip(emb).zip(&batch.missing) {
            let mut rows = e.detach().flatten_all().and_then(|e| e.to_vec1::<f32>())?;
            let d = rows.len() / batch.kept.len();
            for (row, _) in rows.chunks_mut(d).zip(lacks).filter(|(_, l)| **l) {
                row.fill(f32::NAN);
            }
            o.extend(rows);
        }
        kept.extend(batch.kept);
        Ok::<(), Error>(())
    })?;
    Ok((out, kept))
}

/// [`embed_source`] of a feature split (every row).
pub fn embed_split(model: &GramModel, split: &Split, dev: &Device) -> Result<Vec<Vec<f32>>, Error> {
    Ok(embed_source(model, split, dev)?.0)
}

/// Retrieval by volume (gram-host's evaluator) of embeddings in `info.modalities` order. Rows
/// of NaN (samples lacking a modality) are scored by the volume of the vectors present
/// (`gram eval --missing present`).
pub fn retrieval(embeddings: &[Vec<f32>], anchor: usize, dim: usize) -> Result<Retrieval, Error> {
    let (wide, dim) = widened(embeddings, anchor, dim)?;
    let n = wide[anchor].len() / dim;
    let others: Vec<&[f32]> = wide
        .iter()
        .enumerate()
        .filter(|(t, _)| *t != anchor)
        .map(|(_, e)| e.as_slice())
        .collect();
    let scorer = Scorer::new(&others, n, dim)?;
    evaluate(&scorer, &wide[anchor], dim)
        .map(|(r, _)| r)
        .map_err(Error::from)
}

/// Per modality, embeddings as given (borrowed) or completed (owned).
pub type Widened<'a> = Cow<'a, [Vec<f32>]>;

/// Embeddings whose rows of NaN (missing vectors) are completed by gram-host's `present` rule,
/// and their width (D, or D + k − 1 when a row is missing); without a missing row, `emb` itself
/// (no copy).
pub fn widened(emb: &[Vec<f32>], a: usize, d: usize) -> Result<(Widened<'_>, usize), Error> {
    if !emb.iter().flatten().any(|x| x.is_nan()) {
        return Ok((Cow::Borrowed(emb), d));
    }
    let n = emb[a].len() / d;
    let matrix = |t: usize| {
        let finite = emb[t]
            .iter()
            .map(|&x| if x.is_nan() { 0.0 } else { x })
            .collect();
        Matrix::from_vec(&format!("modality {t}"), n, d, finite)
    };
    let others = (0..emb.len())
        .filter(|&t| t != a)
        .map(|t| {
            Ok((
                matrix(t)?,
                emb[t].chunks(d).map(|r| r[0].is_nan()).collect(),
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let (anchor, others) =
        gram_host::missing::complete(&matrix(a)?, &others, MissingRule::Present)?;
    let mut out: Vec<Vec<f32>> = others.iter().map(|m| m.as_slice().to_vec()).collect();
    out.insert(a, anchor.as_slice().to_vec());
    Ok((Cow::Owned(out), anchor.cols))
}
