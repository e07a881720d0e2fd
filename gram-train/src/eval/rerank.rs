//! `gram-train eval`: retrieval by volume in both directions and, with `--rerank K`, each
//! query's top K by volume re-ordered by the DAM head's match logit (the GRAM paper's
//! re-ranking). Ranks follow the project's tie rule (ties count against the ground truth);
//! a ground truth outside the top K keeps its volume rank (which is > K).

use crate::data::source::open_source;
use crate::error::Error;
use crate::model::gram::GramModel;
use crate::train::checkpoint::load_checkpoint;
use crate::train::embed::{embed_source, retrieval, widened};
use candle_core::{Device, Tensor};
use gram_host::cpu::Scorer;
use gram_host::metrics::{Retrieval, ranks_from_matrix, top_k_of_row};
use gram_nostd::{summarize_ranks, to_f32};
use std::path::Path;

/// Pairs scored by the DAM head per forward pass.
const DAM_CHUNK: usize = 4096;

pub struct Evaluation {
    pub samples: usize,
    pub skipped: usize,
    pub volume: Retrieval,
    /// (K, retrieval after re-ranking the top K).
    pub reranked: Option<(usize, Retrieval)>,
}

impl Evaluation {
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "samples": self.samples,
            "skipped_samples": self.skipped,
            "volume": self.volume.to_json(),
        });
        if let Some((k, r)) = &self.reranked {
            v["rerank_k"] = serde_json::json!(k);
            v["reranked"] = r.to_json();
        }
        v
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "{} samples ({} skipped)\nby volume:\n{}",
            self.samples,
            self.skipped,
            self.volume.table()
        );
        if let Some((k, r)) = &self.reranked {
            s += &format!("top {k} re-ranked by DAM:\n{}", r.table());
        }
        s
    }
}

/// DAM logits of (anchor i, candidate j) pairs from unit embeddings in modality order;
/// `volumes[p]` is pair p's volume (the head also sees its GRAM logit).
pub fn dam_logits(
    model: &GramModel,
    emb: &[Vec<f32>],
    pairs: &[(usize, usize)],
    volumes: &[f32],
    dev: &Device,
) -> Result<Vec<f32>, Error> {
    let dam = model.dam.as_ref().ok_or_else(|| {
        Error::config(
            "the checkpoint has no DAM head (trained with a baseline loss or --dam-weight 0)",
        )
    })?;
    let d = model.config.embed_dim;
    let a = model.anchor_index();
    let others: Vec<usize> = (0..emb.len()).filter(|&t| t != a).collect();
    let rows = |t: usize, idx: &mut dyn Iterator<Item = usize>| -> Result<Tensor, Error> {
        let mut v = Vec::new();
        let mut n = 0;
        for r in idx {
            v.extend_from_slice(&emb[t][r * d..(r + 1) * d]);
            n += 1;
        }
        Ok(Tensor::from_vec(v, (n, d), dev)?)
    };
    let inv_tau = model
        .inv_tau()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_scalar::<f32>())?;
    let mut out = Vec::with_capacity(pairs.len());
    for (chunk, vols) in pairs.chunks(DAM_CHUNK).zip(volumes.chunks(DAM_CHUNK)) {
        let gram_logit: Vec<f32> = vols.iter().map(|v| -v * inv_tau).collect();
        let gram_logit = Tensor::from_vec(gram_logit, vols.len(), dev)?;
        let anchor = rows(a, &mut chunk.iter().map(|p| p.0))?;
        let cands = others
            .iter()
            .map(|&t| rows(t, &mut chunk.iter().map(|p| p.1)))
            .collect::<Result<Vec<_>, Error>>()?;
        out.extend(
            dam.score(&anchor, &cands, &gram_logit)
                .and_then(|l| l.to_vec1::<f32>())?,
        );
    }
    Ok(out)
}

/// Rank of the ground truth `truth` among `top` after ordering by `logit` (higher first):
/// 1 + the others whose logit is ≥ the truth's; `fallback` when the truth is not in `top`.
fn reranked_rank(top: &[u32], logits: &[f32], truth: usize, fallback: u32) -> u32 {
    match top.iter().position(|&j| j as usize == truth) {
        Some(p) => {
            let mine = logits[p];
            1 + top
                .iter()
                .zip(logits)
                .filter(|&(&j, &l)| j as usize != truth && l >= mine)
                .count() as u32
        }
        None => fallback,
    }
}

/// Retrieval of `emb` (unit embeddings per modality, row i of each belonging together) by
/// volume, and after re-ranking each query's top `k` by the DAM head: (by volume, re-ranked).
/// Builds the full N×N volume matrix (N² floats) once, for both directions and both
/// rankings; its diagonal comes from the accurate path, as in [`gram_host::metrics::ranks`].
pub fn rerank(
    model: &GramModel,
    emb: &[Vec<f32>],
    k: usize,
    dev: &Device,
) -> Result<(Retrieval, Retrieval), Error> {
    let a = model.anchor_index();
    // Missing rows (NaN): the volume of the vectors present; the DAM head reads what it was
    // trained with in their place (the learned placeholder, or zeros under `present`).
    let (wide, d) = widened(emb, a, model.config.embed_dim)?;
    let emb = &filled(model, emb);
    let n = wide[a].len() / d;
    let others: Vec<&[f32]> = (0..wide.len())
        .filter(|&t| t != a)
        .map(|t| wide[t].as_slice())
        .collect();
    let scorer = Scorer::new(&others, n, d)?;
    let mut v = vec![0f32; n * n];
    scorer.volume_matrix(&wide[a], &mut v)?;
    for i in 0..n {
        let accurate = scorer
            .pair_volume_accurate(&wide[a][i * d..(i + 1) * d], i)
            .and_then(to_f32)?;
        v[i * n + i] = accurate;
    }
    let (mut base_a2d, mut base_d2a) = ranks_from_matrix(&v, n)?;
    let k = k.max(1).min(n);
    let row_top: Vec<Vec<u32>> = (0..n)
        .map(|i| {
            top_k_of_row(&v[i * n..(i + 1) * n], k)
                .into_iter()
                .map(|x| x.0)
                .collect()
        })
        .collect();
    let col_top: Vec<Vec<u32>> = (0..n)
        .map(|j| {
            let col: Vec<f32> = (0..n).map(|i| v[i * n + j]).collect();
            top_k_of_row(&col, k).into_iter().map(|x| x.0).collect()
        })
        .collect();
    let mut pairs = Vec::with_capacity(2 * n * k);
    for (i, top) in row_top.iter().enumerate() {
        pairs.extend(top.iter().map(|&j| (i, j as usize)));
    }
    for (j, top) in col_top.iter().enumerate() {
        pairs.extend(top.iter().map(|&i| (i as usize, j)));
    }
    let vols: Vec<f32> = pairs.iter().map(|&(i, j)| v[i * n + j]).collect();
    let logits = dam_logits(model, emb, &pairs, &vols, dev)?;
    let (row_logits, col_logits) = logits.split_at(n * k);
    let outside = k as u32 + 1;
    // One direction: query q's top list, its logits, and its volume rank.
    let direction = |tops: &[Vec<u32>], logits: &[f32], base: &[u32]| -> Vec<u32> {
        (0..n)
            .map(|q| {
                reranked_rank(
                    &tops[q],
                    &logits[q * k..(q + 1) * k],
                    q,
                    base[q].max(outside),
                )
            })
            .collect()
    };
    let mut a2d = direction(&row_top, row_logits, &base_a2d);
    let mut d2a = direction(&col_top, col_logits, &base_d2a);
    let summary = |a: &mut [u32], b: &mut [u32]| -> Result<Retrieval, Error> {
        Ok(Retrieval {
            anchor_to_data: summarize_ranks(a)?,
            data_to_anchor: summarize_ranks(b)?,
        })
    };
    Ok((
        summary(&mut base_a2d, &mut base_d2a)?,
        summary(&mut a2d, &mut d2a)?,
    ))
}

/// `emb` with each row of NaN replaced by the modality's learned placeholder (unit length) or,
/// without one, zeros — what the DAM head saw for a missing vector in training.
fn filled(model: &GramModel, emb: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let d = model.config.embed_dim;
    emb.iter()
        .zip(&model.placeholders)
        .map(|(e, p)| {
            let fill: Vec<f32> = match p.as_ref().and_then(|p| p.to_vec1::<f32>().ok()) {
                Some(p) => {
                    let norm = p
                        .iter()
                        .map(|x| x * x)
                        .sum::<f32>()
                        .sqrt()
                        .max(f32::MIN_POSITIVE);
                    p.iter().map(|x| x / norm).collect()
                }
                None => vec![0.0; d],
            };
            e.chunks(d)
                .flat_map(|r| {
                    if r[0].is_nan() {
                        fill.clone()
                    } else {
                        r.to_vec()
                    }
                })
                .collect()
        })
        .collect()
}

/// `gram-train eval`: embed `split` of `data` with the checkpoint, evaluate, optionally
/// re-rank.
pub fn evaluate_checkpoint(
    checkpoint: &Path,
    data: &Path,
    split: &str,
    rerank_k: Option<usize>,
    skip_bad: bool,
    dev: &Device,
) -> Result<Evaluation, Error> {
    let loaded = load_checkpoint(checkpoint, dev)?;
    let model = &loaded.model;
    let source = open_source(data, split, &model.config, &loaded.tokenizers, skip_bad)?;
    let (emb, kept) = embed_source(model, source.as_ref(), dev)?;
    if kept.len() < 2 {
        return Err(Error::config(format!(
            "{}: fewer than 2 good samples in split {split}",
            data.display()
        )));
    }
    let (volume, reranked) = match rerank_k {
        Some(k) => {
            let (volume, reranked) = rerank(model, &emb, k, dev)?;
            (volume, Some((k, reranked)))
        }
        None => (
            retrieval(&emb, model.anchor_index(), model.config.embed_dim)?,
            None,
        ),
    };
    Ok(Evaluation {
        samples: kept.len(),
        skipped: source.skipped(),
        volume,
        reranked,
    })
}
