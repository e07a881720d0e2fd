//! Candidates with a missing modality vector (a row of NaN in its file, accepted with
//! `--missing RULE`): the rule turns them into complete tuples so that every command — score,
//! search, eval, loss, report, and the index — works unchanged.
//!
//! Rules, for candidate j lacking the vectors of the modalities T (the anchor is never missing):
//! - `present`: vol(a, present vectors of j). A tuple of fewer vectors has the larger volume
//!   (each vector multiplies the volume by its distance from the others' span, ≤ its norm), so
//!   an incomplete candidate ranks behind a complete one of equal fit.
//! - `scaled`: vol(a, present) · Π_{t∈T} c_t, where c_t is the median, over complete candidates,
//!   of the distance of m_t from the span of the candidate's other vectors — vol(M)/vol(M∖t),
//!   the factor m_t typically contributes (measured without the anchor, which the candidates
//!   cannot know). Up to 10,000 evenly spaced complete candidates are used.
//! - `mean`: the missing m_t is replaced by the mean of modality t's present rows, rescaled to
//!   their median norm — a placeholder embedding, as Symile learns one in training, but
//!   estimated instead of learned.
//!
//! `present` and `scaled` are computed exactly by appending one coordinate per modality: every
//! vector gets 0s there and a missing vector of modality t becomes c_t·e_{D+t}, orthogonal to
//! all the others — present or missing — so vol(a, …, c_t·e_{D+t}, …) = Π c_t · vol(a, present)
//! (c = 1 for `present`), also when a candidate lacks several modalities. The inputs are then
//! copied ([N, D+k−1] in memory) rather than memory-mapped.

use crate::error::Error;
use crate::input::{Matrix, View};

/// How a missing modality vector is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingRule {
    Present,
    Scaled,
    Mean,
}

/// Most complete candidates `scaled` measures c_t on.
const SCALE_SAMPLE: usize = 10_000;

/// The anchor and modalities completed by `rule` (`missing[t][j]`: row j of modality t is
/// missing), named as the files were; their shapes were checked together before. Refuses a
/// candidate with every modality missing, and a modality with no present row.
pub fn complete(
    anchor: &Matrix,
    modalities: &[(Matrix, Vec<bool>)],
    rule: MissingRule,
) -> Result<(Matrix, Vec<Matrix>), Error> {
    let n = modalities[0].0.rows;
    if let Some(j) = (0..n).find(|&j| modalities.iter().all(|(_, miss)| miss[j])) {
        return Err(Error::data(
            &modalities[0].0.name,
            format!("row {j} is missing in every modality (a candidate needs at least one vector)"),
        ));
    }
    for (m, miss) in modalities {
        if miss.iter().all(|&x| x) {
            return Err(Error::data(&m.name, "every row is missing"));
        }
    }
    let owned = |name: &str, rows, cols, data| {
        Matrix::from_vec(name, rows, cols, data).map_err(Error::from)
    };
    match rule {
        MissingRule::Mean => {
            let mods = modalities
                .iter()
                .map(|(m, miss)| owned(&m.name, m.rows, m.cols, with_mean(m.view(), miss)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((
                owned(
                    &anchor.name,
                    anchor.rows,
                    anchor.cols,
                    anchor.as_slice().to_vec(),
                )?,
                mods,
            ))
        }
        MissingRule::Present | MissingRule::Scaled => {
            let scale: Vec<f64> = match rule {
                MissingRule::Scaled => (0..modalities.len())
                    .map(|t| median_distance(modalities, t))
                    .collect(),
                _ => vec![1.0; modalities.len()],
            };
            let (d, k) = (anchor.cols, modalities.len());
            let a = widen(anchor.view(), &[], 0.0, 0, k);
            let mods = modalities
                .iter()
                .zip(&scale)
                .enumerate()
                .map(|(t, ((m, miss), &c))| {
                    owned(
                        &m.name,
                        m.rows,
                        d + k,
                        widen(m.view(), miss, c as f32, t, k),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((owned(&anchor.name, anchor.rows, d + k, a)?, mods))
        }
    }
}

/// Rows of `m` (modality `t` of `k`) with `k` more coordinates: 0s for a present row; a
/// missing row becomes c·e_{D+t}.
fn widen(m: View, missing: &[bool], c: f32, t: usize, k: usize) -> Vec<f32> {
    let d = m.cols;
    let mut out = Vec::with_capacity(m.rows * (d + k));
    for (j, row) in m.data.chunks_exact(d).enumerate() {
        let start = out.len();
        if missing.get(j) == Some(&true) {
            out.resize(start + d + k, 0.0);
            out[start + d + t] = c;
        } else {
            out.extend_from_slice(row);
            out.resize(start + d + k, 0.0);
        }
    }
    out
}

/// `m` with each missing row replaced by the mean present row, rescaled to the median norm.
fn with_mean(m: View, missing: &[bool]) -> Vec<f32> {
    let d = m.cols;
    let present = || {
        m.data
            .chunks_exact(d)
            .zip(missing)
            .filter(|(_, x)| !**x)
            .map(|(r, _)| r)
    };
    let mut mean = vec![0.0f64; d];
    let mut norms = Vec::new();
    for row in present() {
        for (s, &x) in mean.iter_mut().zip(row) {
            *s += x as f64;
        }
        norms.push(row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt());
    }
    let len = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
    let target = median(&mut norms);
    // A mean of exactly zero (perfectly balanced rows) has no direction: keep it zero, which
    // scores the candidate with volume 0 — refused below rather than silently favoured.
    let placeholder: Vec<f32> = mean
        .iter()
        .map(|&x| {
            if len > 0.0 {
                (x / len * target) as f32
            } else {
                0.0
            }
        })
        .collect();
    let mut out = m.data.to_vec();
    for (row, &miss) in out.chunks_exact_mut(d).zip(missing) {
        if miss {
            row.copy_from_slice(&placeholder);
        }
    }
    out
}

/// c_t: the median over (up to [`SCALE_SAMPLE`] evenly spaced) complete candidates of
/// vol(M)/vol(M∖t), the distance of m_t from the span of the candidate's other vectors.
fn median_distance(modalities: &[(Matrix, Vec<bool>)], t: usize) -> f64 {
    let n = modalities[0].0.rows;
    let complete: Vec<usize> = (0..n)
        .filter(|&j| modalities.iter().all(|(_, miss)| !miss[j]))
        .collect();
    let step = complete.len().div_ceil(SCALE_SAMPLE).max(1);
    let mut dist: Vec<f64> = complete
        .iter()
        .step_by(step)
        .filter_map(|&j| {
            let rows: Vec<&[f32]> = modalities.iter().map(|(m, _)| m.row(j)).collect();
            distance_added(&rows, t)
        })
        .collect();
    median(&mut dist)
}

/// vol(tuple) / vol(tuple without vector `t`): the distance of `tuple[t]` from the span of the
/// others (its norm when it is alone) — the factor it multiplies the volume by. `None` when the
/// others are degenerate (volume 0) or a volume cannot be computed. Shared with training's
/// `scaled` rule (gram-train), which measures it per batch.
pub fn distance_added<T: gram_nostd::Element>(tuple: &[&[T]], t: usize) -> Option<f64> {
    let others: Vec<&[T]> = tuple
        .iter()
        .enumerate()
        .filter(|(s, _)| *s != t)
        .map(|(_, r)| *r)
        .collect();
    let all = gram_nostd::volume(tuple).ok()?;
    let rest = if others.is_empty() {
        1.0
    } else {
        gram_nostd::volume(&others).ok()?
    };
    (rest > 0.0).then(|| all / rest)
}

/// The median of `x` (the mean of the middle two for an even count; 1 for none: no factor).
pub fn median(x: &mut [f64]) -> f64 {
    if x.is_empty() {
        return 1.0;
    }
    x.sort_by(f64::total_cmp);
    let n = x.len();
    if n % 2 == 1 {
        x[n / 2]
    } else {
        0.5 * (x[n / 2 - 1] + x[n / 2])
    }
}
