//! Scoring samples that lack a modality ([`MissingRule`]): the embeddings of a batch with each
//! missing row replaced, so that every loss — GRAM and DAM, pairwise InfoNCE, Symile — runs
//! unchanged on complete tuples. A replaced row's own embedding never reaches the loss (it is
//! selected away, not multiplied by 0, so no gradient — not even 0·NaN — flows back to its
//! encoder input).

use crate::config::MissingRule;
use candle_core::{D, DType, Result, Tensor};

/// `emb` [n, D] per modality with the rows `missing[t]` marks (a 0/1 f32 mask [n]; `None`: none
/// missing) replaced by `rule`:
/// - `Present`: every embedding gains k coordinates, 0 (k modalities); a missing vector of
///   modality t becomes e_{D+t}. It is of unit length and orthogonal to every other vector of
///   its tuple — the present ones and the other missing ones — so a tuple's Gram determinant,
///   its volume, is that of its present vectors, and its similarity to any vector is 0.
/// - `Placeholder`: the missing row becomes modality t's learned `placeholders[t]`, normalised.
///
/// With no mask at all, `emb` is returned as it is (a complete batch trains bit for bit as it
/// would without this step). `Drop` never sees an incomplete batch (its samples are filtered
/// out before training).
pub fn complete(
    emb: &[Tensor],
    missing: &[Option<Tensor>],
    rule: MissingRule,
    placeholders: &[Option<Tensor>],
) -> Result<Vec<Tensor>> {
    if missing.iter().all(Option::is_none) {
        return Ok(emb.to_vec());
    }
    match rule {
        MissingRule::Present => emb
            .iter()
            .zip(missing)
            .enumerate()
            .map(|(t, (e, m))| present(e, m.as_ref(), t, emb.len()))
            .collect(),
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
/// e_{D+t}.
fn present(e: &Tensor, mask: Option<&Tensor>, t: usize, k: usize) -> Result<Tensor> {
    let padded = e.pad_with_zeros(D::Minus1, 0, k)?;
    let Some(mask) = mask else {
        return Ok(padded);
    };
    let d = e.dim(1)?;
    let mut axis = vec![0f32; d + k];
    axis[d + t] = 1.0;
    let axis = Tensor::from_vec(axis, d + k, e.device())?
        .to_dtype(e.dtype())?
        .broadcast_as(padded.shape())?;
    select(mask, &axis, &padded)
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
