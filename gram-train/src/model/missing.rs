//! Scoring samples that lack a modality ([`MissingRule`]): the embeddings of a batch with each
//! missing row replaced, so that every loss — GRAM and DAM, pairwise InfoNCE, Symile — runs
//! unchanged on complete tuples. A replaced row's own embedding never reaches the loss (it is
//! selected away, not multiplied by 0, so no gradient — not even 0·NaN — flows back to its
//! encoder input).

use crate::config::MissingRule;
use candle_core::{D, DType, Result, Tensor};
use gram_host::missing::{distance_added, median};

/// `emb` [n, D] per modality with the rows `missing[t]` marks (a 0/1 f32 mask \[n\]; `None`: none
/// missing) replaced by `rule`:
/// - `Present`: every embedding gains k coordinates, 0 (k modalities); a missing vector of
///   modality t becomes e_{D+t}. It is of unit length and orthogonal to every other vector of
///   its tuple — the present ones and the other missing ones — so a tuple's Gram determinant,
///   its volume, is that of its present vectors, and its similarity to any vector is 0.
/// - `Scaled`: as `Present`, the axis scaled by c_t — the median, over the batch's complete
///   samples, of the distance of modality t's vector from the span of the sample's other
///   non-anchor vectors (a batch statistic, no gradient): what a present vector typically
///   multiplies the volume by, so an incomplete tuple is not favoured or penalised for having
///   fewer vectors (`gram eval --missing scaled`, estimated per batch). c_t = 1 when the batch
///   has no complete sample.
/// - `Placeholder`: the missing row becomes modality t's learned `placeholders[t]`, normalised.
///
/// `placeholders[t]`: modality t's learned placeholder (`Placeholder` only); `anchor`: the
/// anchor's index (never missing; `Scaled` measures distances without it).
///
/// With no mask at all, `emb` is returned as it is (a complete batch trains bit for bit as it
/// would without this step). `Drop` never sees an incomplete batch (its samples are filtered
/// out before training).
pub fn complete(
    emb: &[Tensor],
    missing: &[Option<Tensor>],
    rule: MissingRule,
    placeholders: &[Option<Tensor>],
    anchor: usize,
) -> Result<Vec<Tensor>> {
    if missing.iter().all(Option::is_none) {
        return Ok(emb.to_vec());
    }
    match rule {
        MissingRule::Present | MissingRule::Scaled => {
            let scale = match rule {
                MissingRule::Scaled => median_distances(emb, missing, anchor)?,
                _ => vec![1.0; emb.len()],
            };
            emb.iter()
                .zip(missing)
                .enumerate()
                .map(|(t, (e, m))| present(e, m.as_ref(), t, emb.len(), scale[t]))
                .collect()
        }
        MissingRule::Placeholder => emb
            .iter()
            .zip(missing)
            .zip(placeholders)
            .map(|((e, m), p)| match (m, p) {
                (None, _) => Ok(e.clone()),
                (Some(m), Some(p)) => select(m, &unit(p)?.broadcast_as(e.shape())?, e),
                (Some(_), None) => {
                    candle_core::bail!("a modality without a placeholder is missing")
                }
            })
            .collect(),
        MissingRule::Drop => candle_core::bail!("incomplete samples reached a `drop` run's loss"),
    }
}

/// `e` [n, D] of modality `t` of `k` → [n, D+k]: zeros appended; rows `mask` marks become
/// c·e_{D+t}.
fn present(e: &Tensor, mask: Option<&Tensor>, t: usize, k: usize, c: f64) -> Result<Tensor> {
    let padded = e.pad_with_zeros(D::Minus1, 0, k)?;
    let Some(mask) = mask else {
        return Ok(padded);
    };
    let d = e.dim(1)?;
    let mut axis = vec![0f64; d + k];
    axis[d + t] = c;
    let axis = Tensor::from_vec(axis, d + k, e.device())?
        .to_dtype(e.dtype())?
        .broadcast_as(padded.shape())?;
    select(mask, &axis, &padded)
}

/// Per modality: c_t of [`MissingRule::Scaled`] from the batch's complete samples (1 for the
/// anchor, and for every modality when no sample is complete): gram-host's measure of the CLI's
/// `scaled` rule, on this batch's embeddings in f64.
fn median_distances(emb: &[Tensor], missing: &[Option<Tensor>], anchor: usize) -> Result<Vec<f64>> {
    let host = |t: &Tensor| t.to_dtype(DType::F64)?.to_vec2::<f64>();
    let rows: Vec<Vec<Vec<f64>>> = emb.iter().map(host).collect::<Result<_>>()?;
    let lacks: Vec<Vec<f64>> = missing
        .iter()
        .map(|m| {
            m.as_ref().map_or(Ok(vec![0.0; rows[0].len()]), |m| {
                m.to_dtype(DType::F64)?.to_vec1()
            })
        })
        .collect::<Result<_>>()?;
    let complete: Vec<usize> = (0..rows[0].len())
        .filter(|&j| lacks.iter().all(|l| l[j] == 0.0))
        .collect();
    let others: Vec<usize> = (0..emb.len()).filter(|&t| t != anchor).collect();
    Ok((0..emb.len())
        .map(|t| match others.iter().position(|&s| s == t) {
            Some(at) if !complete.is_empty() => {
                let mut d: Vec<f64> = complete
                    .iter()
                    .filter_map(|&j| {
                        let tuple: Vec<&[f64]> =
                            others.iter().map(|&s| rows[s][j].as_slice()).collect();
                        distance_added(&tuple, at)
                    })
                    .collect();
                median(&mut d)
            }
            _ => 1.0,
        })
        .collect())
}

/// Row i of `on_true` where `mask[i]` is 1, else of `on_false` ([n, D] each).
fn select(mask: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
    mask.to_dtype(DType::U8)?
        .unsqueeze(1)?
        .broadcast_as(on_false.shape())?
        .where_cond(on_true, on_false)
}

/// `p` / ‖p‖.
fn unit(p: &Tensor) -> Result<Tensor> {
    p.broadcast_div(&p.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}
