//! Training losses, each readable on one screen: GRAM, DAM, and the two baselines
//! (anchor-pairwise cosine InfoNCE, Symile). Embeddings are L2-normalised rows [B, D].

use candle_core::{D, DType, Result, Tensor};
use candle_nn::ops::log_softmax;
use rand::Rng;

/// Cross-entropy of each row of `logits` [B, B] against the diagonal, with PyTorch's label
/// smoothing: (1 − ls)·(−log p_ii) + ls·mean_j(−log p_ij), averaged over rows.
pub fn smoothed_diagonal_ce(logits: &Tensor, label_smoothing: f64) -> Result<Tensor> {
    smoothed_ce_offset(logits, 0, label_smoothing)
}

/// [`smoothed_diagonal_ce`] for a block of rows [b, n] whose row i belongs with column
/// i + `offset` (a rank's local anchors against the global batch). f32 on the CPU: one fused
/// op ([`crate::ops::smoothed_ce`]); elsewhere [`smoothed_ce_offset_ops`].
pub fn smoothed_ce_offset(logits: &Tensor, offset: usize, label_smoothing: f64) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        return crate::ops::smoothed_ce::smoothed_ce(logits, offset, label_smoothing);
    }
    smoothed_ce_offset_ops(logits, offset, label_smoothing)
}

/// [`smoothed_ce_offset`] from Candle ops (any device and dtype).
pub fn smoothed_ce_offset_ops(
    logits: &Tensor,
    offset: usize,
    label_smoothing: f64,
) -> Result<Tensor> {
    let (b, n) = logits.dims2()?;
    if offset + b > n {
        candle_core::bail!("cross-entropy: {b} rows with offset {offset} against {n} columns")
    }
    let logp = log_softmax(logits, D::Minus1)?;
    let mut onehot = vec![0f32; b * n];
    for i in 0..b {
        onehot[i * n + i + offset] = 1.0;
    }
    let eye = Tensor::from_vec(onehot, (b, n), logp.device())?.to_dtype(logp.dtype())?;
    let nll = (logp.mul(&eye)?.sum(1)? * -1.0)?;
    let smooth = (logp.mean(1)? * -1.0)?;
    ((nll * (1.0 - label_smoothing))? + (smooth * label_smoothing)?)?.mean(0)
}

/// The loss value and its two directions.
pub struct Directions {
    pub loss: Tensor,
    pub anchor_to_data: Tensor,
    pub data_to_anchor: Tensor,
}

/// GRAM: logits −V/τ; anchor_to_data = CE over rows, data_to_anchor = CE over columns; mean.
pub fn gram_loss(volumes: &Tensor, inv_tau: &Tensor, label_smoothing: f64) -> Result<Directions> {
    let logits = volumes.neg()?.broadcast_mul(inv_tau)?;
    let anchor_to_data = smoothed_diagonal_ce(&logits, label_smoothing)?;
    let data_to_anchor = smoothed_diagonal_ce(&logits.t()?, label_smoothing)?;
    let loss = ((&anchor_to_data + &data_to_anchor)? * 0.5)?;
    Ok(Directions {
        loss,
        anchor_to_data,
        data_to_anchor,
    })
}

/// Baseline: CLIP-style symmetric InfoNCE between the anchor and each modality, summed.
pub fn pairwise_infonce(
    anchor: &Tensor,
    modalities: &[Tensor],
    inv_tau: &Tensor,
    label_smoothing: f64,
) -> Result<Tensor> {
    let mut total = Tensor::zeros((), anchor.dtype(), anchor.device())?;
    for m in modalities {
        let logits = anchor.matmul(&m.t()?)?.broadcast_mul(inv_tau)?;
        let l = ((smoothed_diagonal_ce(&logits, label_smoothing)?
            + smoothed_diagonal_ce(&logits.t()?, label_smoothing)?)?
            * 0.5)?;
        total = (total + l)?;
    }
    Ok(total)
}

/// Baseline: Symile (Saporta et al., 2024) with O(N) negatives. For each modality t, the
/// multilinear inner product MIP(x_1,i, …, x_t,j, …) = (Π_{s≠t} x_s,i) · x_t,j scores the
/// positive against the batch's other x_t; the loss is the mean CE over t. The MIP of k unit
/// vectors in R^D is O(D^(1−k/2)), far below the O(1) of a cosine, so logits are multiplied
/// by D^(k/2−1) (a constant the learned temperature could not reach within its clamp).
pub fn symile(all: &[Tensor], inv_tau: &Tensor, label_smoothing: f64) -> Result<Tensor> {
    let dim = all[0].dim(1)? as f64;
    let scale = dim.powf(all.len() as f64 / 2.0 - 1.0);
    let mut total = Tensor::zeros((), all[0].dtype(), all[0].device())?;
    for t in 0..all.len() {
        let mut prod: Option<Tensor> = None;
        for (s, x) in all.iter().enumerate() {
            if s != t {
                prod = Some(match prod {
                    None => x.clone(),
                    Some(p) => p.mul(x)?,
                });
            }
        }
        let logits =
            (prod.expect("k ≥ 2").matmul(&all[t].t()?)? * scale)?.broadcast_mul(inv_tau)?;
        total = (total + smoothed_diagonal_ce(&logits, label_smoothing)?)?;
    }
    total / all.len() as f64
}

/// Hard negatives for DAM from the GRAM logits −V/τ (detached, [B, B] on any device): for
/// each anchor i a candidate j ≠ i drawn with probability softmax(logits[i, :]) (diagonal
/// excluded), and for each candidate j an anchor i ≠ j drawn from softmax(logits[:, j]).
/// Returns (anchor index, candidate index) pairs, B of each kind. Needs B ≥ 2.
///
/// Inverse-CDF sampling on the logits' device, in f64: the row's cumulative weights against
/// u·total with one uniform u per row from `rng` (rows first, then columns: 2B draws), so only
/// the 2B chosen indices reach the host, never the B×B matrix.
pub fn sample_hard_negatives(logits: &Tensor, rng: &mut impl Rng) -> Result<Vec<(usize, usize)>> {
    let b = logits.dim(0)?;
    let rows = draw_per_row(logits, rng)?;
    let cols = draw_per_row(&logits.t()?, rng)?;
    let mut pairs: Vec<(usize, usize)> = rows.into_iter().enumerate().collect();
    pairs.extend(cols.into_iter().enumerate().map(|(j, i)| (i, j)));
    debug_assert_eq!(pairs.len(), 2 * b);
    Ok(pairs)
}

/// One index per row of `logits` [B, B], j ≠ row, drawn from softmax over the row.
fn draw_per_row(logits: &Tensor, rng: &mut impl Rng) -> Result<Vec<usize>> {
    let (b, dev) = (logits.dim(0)?, logits.device());
    let l = logits.to_dtype(DType::F64)?;
    let diag = Tensor::eye(b, DType::U8, dev)?;
    let l = diag.where_cond(&l.ones_like()?.affine(0.0, f64::NEG_INFINITY)?, &l)?;
    let w = l.broadcast_sub(&l.max_keepdim(1)?)?.exp()?;
    let cum = w.cumsum(1)?;
    // u = 0 would select a zero-weight column (the diagonal); u is in [0, 1).
    let u: Vec<f64> = (0..b)
        .map(|_| rng.random::<f64>().max(f64::MIN_POSITIVE))
        .collect();
    let target = cum
        .narrow(1, b - 1, 1)?
        .mul(&Tensor::from_vec(u, (b, 1), dev)?)?;
    // The first column whose cumulative weight reaches the target = how many stay below it.
    let idx = cum
        .broadcast_lt(&target)?
        .to_dtype(DType::U32)?
        .sum(1)?
        .to_vec1::<u32>()?;
    Ok(idx.into_iter().map(|i| (i as usize).min(b - 1)).collect())
}

/// Binary cross-entropy with logits, mean over the batch.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    candle_nn::loss::binary_cross_entropy_with_logit(
        logits,
        &targets.to_dtype(DType::F32)?.to_dtype(logits.dtype())?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::SeedableRng;

    /// The fused CPU cross-entropy against the Candle-op form: loss and gradient, rows and
    /// transposed logits (the GRAM loss's two directions), a rank's offset block, a strided
    /// slice (copied first), with and without label smoothing.
    #[test]
    fn fused_cross_entropy_equals_the_tensor_ops() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 3.0, (9, 24), &dev).unwrap();
        // The same logits stored column by column: a transposed view of a row-major copy.
        let by_columns = |t: &Tensor| t.t().and_then(|t| t.contiguous()).and_then(|t| t.t());
        let square = x.as_tensor().narrow(1, 0, 9).unwrap();
        let views: Vec<(Tensor, usize)> = vec![
            (square.contiguous().unwrap(), 0),
            (by_columns(&square).unwrap(), 0),
            (x.as_tensor().clone(), 7),
            (by_columns(x.as_tensor()).unwrap(), 15),
            (x.as_tensor().narrow(1, 3, 12).unwrap(), 2),
        ];
        for (logits, offset) in views {
            for ls in [0.0, 0.1] {
                let fused = smoothed_ce_offset(&logits, offset, ls).unwrap();
                let ops = smoothed_ce_offset_ops(&logits, offset, ls).unwrap();
                let (a, b) = (
                    fused.to_scalar::<f32>().unwrap(),
                    ops.to_scalar::<f32>().unwrap(),
                );
                assert!((a - b).abs() <= 1e-6 * b.abs(), "loss {a} vs {b}");
                let ga = fused.backward().unwrap();
                let gb = ops.backward().unwrap();
                let flat = |g: &candle_core::backprop::GradStore| {
                    g.get(x.as_tensor())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                };
                let (ga, gb) = (flat(&ga), flat(&gb));
                let scale = gb.iter().fold(0f32, |s, v| s.max(v.abs()));
                assert!(scale > 0.0);
                for (p, q) in ga.iter().zip(&gb) {
                    assert!(
                        (p - q).abs() <= 1e-6 * scale,
                        "offset {offset}, ls {ls}: {p} vs {q}"
                    );
                }
            }
        }
        let too_wide = Tensor::zeros((4, 5), DType::F32, &dev).unwrap();
        assert!(smoothed_ce_offset(&too_wide, 2, 0.1).is_err());
        assert!(smoothed_ce_offset_ops(&too_wide, 2, 0.1).is_err());
    }

    /// The sampler written out on the host: walk the row subtracting weights from u·total.
    fn reference(logits: &[f64], b: usize, rng: &mut impl Rng) -> Vec<(usize, usize)> {
        let mut draw = |w: Vec<(usize, f64)>| -> usize {
            let max = w.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = w.iter().map(|x| (x.1 - max).exp()).sum();
            let mut u = rng.random::<f64>().max(f64::MIN_POSITIVE) * total;
            for &(idx, logit) in &w {
                u -= (logit - max).exp();
                if u <= 0.0 {
                    return idx;
                }
            }
            w.last().expect("b ≥ 2").0
        };
        let mut pairs = Vec::new();
        for i in 0..b {
            let w = (0..b).filter(|&j| j != i).map(|j| (j, logits[i * b + j]));
            pairs.push((i, draw(w.collect())));
        }
        for j in 0..b {
            let w = (0..b).filter(|&i| i != j).map(|i| (i, logits[i * b + j]));
            pairs.push((draw(w.collect()), j));
        }
        pairs
    }

    #[test]
    fn device_sampler_draws_what_the_host_walk_draws() {
        let b = 24;
        for seed in 0..20u64 {
            // Spread logits (as −V/τ with τ = 0.07 gives) so rows are far from uniform.
            let logits: Vec<f64> = gram_nostd::uniform::Uniform::new(2 * seed + 1)
                .take(b * b)
                .map(|x| 30.0 * x)
                .collect();
            let t = Tensor::from_vec(logits.clone(), (b, b), &Device::Cpu).unwrap();
            let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let got = sample_hard_negatives(&t.to_dtype(DType::F32).unwrap(), &mut r1).unwrap();
            let want = reference(
                &logits.iter().map(|&x| x as f32 as f64).collect::<Vec<_>>(),
                b,
                &mut r2,
            );
            assert_eq!(got, want, "seed {seed}");
            assert!(got[..b].iter().all(|&(i, j)| i != j) && got[b..].iter().all(|&(i, j)| i != j));
        }
    }
}
