//! Retrieval metrics over a square volume matrix, computed tile by tile (never materialising
//! N×N): anchor→data ranks each anchor's own candidate among all candidates, data→anchor ranks
//! each candidate's own anchor among all anchors. Smaller volume ranks first; ties count
//! against the ground truth (see [`gram_nostd::rank_of`]).

use crate::cpu::{CpuStats, Scorer};
use gram_nostd::{GramError, RankSummary, Ties, rank_of, rank_with, summarize_ranks, to_f32};
use rayon::prelude::*;

/// Both directions of a retrieval evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retrieval {
    pub anchor_to_data: RankSummary,
    pub data_to_anchor: RankSummary,
}

impl Retrieval {
    /// `{"anchor_to_data": {r1, r5, r10, medr, meanr}, "data_to_anchor": {…}}`: the form
    /// `gram eval --json`, reports and gram-train's evaluations write.
    pub fn to_json(&self) -> serde_json::Value {
        let dir = |s: &RankSummary| serde_json::json!({"r1": s.r1, "r5": s.r5, "r10": s.r10, "medr": s.medr, "meanr": s.meanr});
        serde_json::json!({"anchor_to_data": dir(&self.anchor_to_data), "data_to_anchor": dir(&self.data_to_anchor)})
    }

    /// The two directions as a fixed-width text table (R@1/5/10 in %, MedR, MeanR).
    pub fn table(&self) -> String {
        let mut s = String::from("direction        R@1     R@5     R@10    MedR    MeanR\n");
        for (name, d) in [
            ("anchor->data", &self.anchor_to_data),
            ("data->anchor", &self.data_to_anchor),
        ] {
            s += &format!(
                "{name:<15} {:>6.2}  {:>6.2}  {:>6.2}  {:>6.1}  {:>7.2}\n",
                d.r1, d.r5, d.r10, d.medr, d.meanr
            );
        }
        s
    }
}

/// What one pass over a square volume matrix yields.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranks {
    /// 1-based rank of candidate i among all candidates for anchor i.
    pub anchor_to_data: Vec<u32>,
    /// 1-based rank of anchor j among all anchors for candidate j.
    pub data_to_anchor: Vec<u32>,
    /// V[i, i] from the accurate path (the positives).
    pub positives: Vec<f32>,
    /// min_j V[i, j] of each row (the positive included).
    pub row_min: Vec<f32>,
    pub stats: CpuStats,
}

/// 1-based ranks in both directions (ties with the ground truth ranked by `ties`), the
/// positives and each row's minimum, from the volume matrix of `anchor` (row i belongs with
/// candidate i; N1 must equal N2), tile by tile.
pub fn ranks_full(
    scorer: &Scorer,
    anchor: &[f32],
    dim: usize,
    ties: Ties,
) -> Result<Ranks, GramError> {
    let n = scorer.candidates();
    if anchor.len() != n * dim {
        return Err(GramError::DimensionMismatch {
            expected: n * dim,
            found: anchor.len(),
        });
    }
    // The ground-truth volumes come from the accurate path and replace the tile's diagonal, so
    // every comparison with V[j][j] sees the same value.
    let diag: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|j| to_f32(scorer.pair_volume_accurate(&anchor[j * dim..(j + 1) * dim], j)?))
        .collect::<Result<_, _>>()?;
    struct Acc {
        row_ranks: Vec<(usize, u32, f32)>,
        col_ahead: Vec<u32>,
        error: Option<GramError>,
    }
    let init = || Acc {
        row_ranks: Vec::new(),
        col_ahead: vec![0; n],
        error: None,
    };
    let (acc, stats) = scorer.fold_tiles(
        anchor,
        init,
        |mut acc, row0, tile| {
            for (r, row) in tile.chunks_exact_mut(n).enumerate() {
                let i = row0 + r;
                row[i] = diag[i];
                let min = row.iter().copied().fold(f32::INFINITY, f32::min);
                match rank_with(row, i, ties) {
                    Ok(rank) => acc.row_ranks.push((i, rank as u32, min)),
                    Err(e) => acc.error = Some(e),
                }
                for (j, (&v, ahead)) in row.iter().zip(acc.col_ahead.iter_mut()).enumerate() {
                    *ahead += ties.ahead(v as f64, diag[j] as f64, i, j) as u32;
                }
            }
            acc
        },
        |mut a, b| {
            a.row_ranks.extend(b.row_ranks);
            for (x, y) in a.col_ahead.iter_mut().zip(b.col_ahead) {
                *x += y;
            }
            a.error = a.error.or(b.error);
            a
        },
    )?;
    if let Some(e) = acc.error {
        return Err(e);
    }
    let (mut a2d, mut row_min) = (vec![0u32; n], vec![0f32; n]);
    for (i, r, m) in acc.row_ranks {
        a2d[i] = r;
        row_min[i] = m;
    }
    Ok(Ranks {
        anchor_to_data: a2d,
        data_to_anchor: acc.col_ahead.iter().map(|&c| c + 1).collect(),
        positives: diag,
        row_min,
        stats,
    })
}

/// The ranks of [`ranks_full`] in both directions, and the backend's counts.
pub fn ranks(
    scorer: &Scorer,
    anchor: &[f32],
    dim: usize,
) -> Result<(Vec<u32>, Vec<u32>, CpuStats), GramError> {
    let r = ranks_full(scorer, anchor, dim, Ties::Pessimistic)?;
    Ok((r.anchor_to_data, r.data_to_anchor, r.stats))
}

/// Ranks in both directions from a full row-major n×n score matrix (ascending = better),
/// with the same tie rule. For scores that are not volumes (e.g. a baseline's negated
/// similarity); volumes should go through [`ranks`], which never materialises the matrix.
pub fn ranks_from_matrix(v: &[f32], n: usize) -> Result<(Vec<u32>, Vec<u32>), GramError> {
    if v.len() != n * n {
        return Err(GramError::DimensionMismatch {
            expected: n * n,
            found: v.len(),
        });
    }
    let a2d = (0..n)
        .map(|i| rank_of(&v[i * n..(i + 1) * n], i).map(|r| r as u32))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ahead = vec![0u32; n];
    for i in 0..n {
        for j in 0..n {
            ahead[j] += (i != j && v[i * n + j] <= v[j * n + j]) as u32;
        }
    }
    Ok((a2d, ahead.into_iter().map(|c| c + 1).collect()))
}

/// [`Retrieval`] from a full score matrix (see [`ranks_from_matrix`]).
pub fn evaluate_matrix(v: &[f32], n: usize) -> Result<Retrieval, GramError> {
    let (mut a2d, mut d2a) = ranks_from_matrix(v, n)?;
    Ok(Retrieval {
        anchor_to_data: summarize_ranks(&mut a2d)?,
        data_to_anchor: summarize_ranks(&mut d2a)?,
    })
}

/// The `k` smallest entries of `row` as (index, value), ascending, ties by smaller index —
/// the order every backend's top-k follows.
pub fn top_k_of_row(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let order = |a: &u32, b: &u32| row[*a as usize].total_cmp(&row[*b as usize]).then(a.cmp(b));
    let k = k.min(row.len());
    if k < idx.len() {
        idx.select_nth_unstable_by(k, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    idx.into_iter().map(|j| (j, row[j as usize])).collect()
}

/// Per-anchor top-k by volume on the CPU, streamed (never a row of the N1×N2 matrix).
pub fn top_k(scorer: &Scorer, anchor: &[f32], k: usize) -> Result<Vec<Vec<(u32, f32)>>, GramError> {
    let (keys, _) = scorer.top_k_keys(anchor, k, 0)?;
    Ok(keys
        .into_iter()
        .map(|row| row.into_iter().map(crate::cpu::topk::unkey).collect())
        .collect())
}

/// R@1/5/10, MedR and MeanR in both directions, ties counted against the ground truth.
pub fn evaluate(
    scorer: &Scorer,
    anchor: &[f32],
    dim: usize,
) -> Result<(Retrieval, CpuStats), GramError> {
    evaluate_with(scorer, anchor, dim, Ties::Pessimistic)
}

/// [`evaluate`] under any [`Ties`] rule.
pub fn evaluate_with(
    scorer: &Scorer,
    anchor: &[f32],
    dim: usize,
    ties: Ties,
) -> Result<(Retrieval, CpuStats), GramError> {
    let mut r = ranks_full(scorer, anchor, dim, ties)?;
    Ok((
        Retrieval {
            anchor_to_data: summarize_ranks(&mut r.anchor_to_data)?,
            data_to_anchor: summarize_ranks(&mut r.data_to_anchor)?,
        },
        r.stats,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranks by brute force from the full matrix, ties against the ground truth.
    fn brute(v: &[f32], n: usize) -> (Vec<u32>, Vec<u32>) {
        let a2d = (0..n)
            .map(|i| {
                1 + (0..n)
                    .filter(|&j| j != i && v[i * n + j] <= v[i * n + i])
                    .count() as u32
            })
            .collect();
        let d2a = (0..n)
            .map(|j| {
                1 + (0..n)
                    .filter(|&i| i != j && v[i * n + j] <= v[j * n + j])
                    .count() as u32
            })
            .collect();
        (a2d, d2a)
    }

    #[test]
    fn tie_rules_on_hand_made_ties() {
        // d = 2, k = 2: vol(a, m) = |a × m|. Anchors (e1, e1, e2) and candidates (e1, e1, e2):
        // V = [[0, 0, 1], [0, 0, 1], [1, 1, 0]] — pairs 0 and 1 tie with each other.
        let x = [1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0];
        let scorer = Scorer::new(&[&x], 3, 2).unwrap();
        for (ties, want) in [
            (Ties::Pessimistic, [2, 2, 1]),
            (Ties::Optimistic, [1, 1, 1]),
            (Ties::Stable, [1, 2, 1]),
        ] {
            let r = ranks_full(&scorer, &x, 2, ties).unwrap();
            assert_eq!(r.anchor_to_data, want, "{ties:?}");
            assert_eq!(r.data_to_anchor, want, "{ties:?}");
        }
        let (r, _) = evaluate_with(&scorer, &x, 2, Ties::Stable).unwrap();
        assert!((r.anchor_to_data.r1 - 200.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_case_with_ties() {
        // d = 2, k = 2: vol(a, m) = |a × m|. Anchors and candidates chosen so that:
        // anchor 0 = e1, candidates: c0 = e1 (vol 0), c1 = e2 (vol 1), c2 = (1,1) (vol 1)
        // anchor 1 = e2: c0 → 1, c1 → 0, c2 → 1
        // anchor 2 = (1,1): c0 → 1, c1 → 1, c2 → 0
        let anchor = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let m = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let scorer = Scorer::new(&[&m], 3, 2).unwrap();
        let (a2d, d2a, _) = ranks(&scorer, &anchor, 2).unwrap();
        assert_eq!(a2d, vec![1, 1, 1]);
        assert_eq!(d2a, vec![1, 1, 1]);
        // Now make every volume equal: a row of ties ranks the truth last.
        let anchor = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0];
        let m = [0.0f32, 1.0, 0.0, 1.0, 0.0, 1.0];
        let scorer = Scorer::new(&[&m], 3, 2).unwrap();
        let (a2d, d2a, _) = ranks(&scorer, &anchor, 2).unwrap();
        assert_eq!(a2d, vec![3, 3, 3]);
        assert_eq!(d2a, vec![3, 3, 3]);
        let (r, _) = evaluate(&scorer, &anchor, 2).unwrap();
        assert_eq!(r.anchor_to_data.r1, 0.0);
        assert_eq!(r.anchor_to_data.medr, 3.0);
    }

    #[test]
    fn streaming_ranks_equal_brute_force() {
        let (n, d) = (150, 5);
        let mut rng = gram_nostd::uniform::Uniform::new(7);
        let mut next = || rng.next().unwrap() as f32;
        let m0: Vec<f32> = (0..n * d).map(|_| next()).collect();
        let m1: Vec<f32> = (0..n * d).map(|_| next()).collect();
        // Anchors correlated with their own candidates so ranks are informative.
        let anchor: Vec<f32> = (0..n * d).map(|x| m0[x] + m1[x] + 0.3 * next()).collect();
        let scorer = Scorer::new(&[&m0, &m1], n, d).unwrap();
        let mut v = vec![0.0f32; n * n];
        scorer.volume_matrix(&anchor, &mut v).unwrap();
        for j in 0..n {
            v[j * n + j] = to_f32(
                scorer
                    .pair_volume_accurate(&anchor[j * d..(j + 1) * d], j)
                    .unwrap(),
            )
            .unwrap();
        }
        let (a2d, d2a, _) = ranks(&scorer, &anchor, d).unwrap();
        let from_matrix = ranks_from_matrix(&v, n).unwrap();
        assert_eq!(from_matrix, brute(&v, n));
        assert_eq!((a2d, d2a), from_matrix);
    }
}
