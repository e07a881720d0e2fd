//! Ranks of the ground truth in a score row, and the retrieval summary (R@k, MedR, MeanR).

use crate::{Element, GramError};

/// How a candidate whose score equals the ground truth's is ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ties {
    /// Ahead of the ground truth: ties never flatter a model (a row of equal scores ranks the
    /// target last). gram's default.
    #[default]
    Pessimistic,
    /// Behind it (a row of equal scores ranks the target first).
    Optimistic,
    /// The order of a stable ascending sort by score: ahead when its index is lower — what
    /// the published evaluation code computes with `argsort`.
    Stable,
}

impl Ties {
    /// Whether candidate `j` with `score` ranks ahead of the ground truth `target` scoring
    /// `truth`.
    #[inline]
    pub fn ahead(self, score: f64, truth: f64, j: usize, target: usize) -> bool {
        j != target
            && (score < truth
                || (score == truth
                    && match self {
                        Ties::Pessimistic => true,
                        Ties::Optimistic => false,
                        Ties::Stable => j < target,
                    }))
    }
}

/// 1-based rank of `scores[target]` when candidates are sorted by ascending score (smaller
/// volume = better match), with [`Ties::Pessimistic`]: every other candidate with a score ≤
/// the target's is counted ahead of it.
///
/// Errors: `EmptyInput`, `DimensionMismatch` (target out of range), `NonFinite`.
pub fn rank_of<T: Element>(scores: &[T], target: usize) -> Result<usize, GramError> {
    rank_with(scores, target, Ties::Pessimistic)
}

/// [`rank_of`] under any [`Ties`] rule. Same errors.
pub fn rank_with<T: Element>(scores: &[T], target: usize, ties: Ties) -> Result<usize, GramError> {
    if scores.is_empty() {
        return Err(GramError::EmptyInput);
    }
    let t = scores
        .get(target)
        .ok_or(GramError::DimensionMismatch {
            expected: scores.len(),
            found: target + 1,
        })?
        .to_f64();
    let mut ahead = 0;
    for (j, s) in scores.iter().enumerate() {
        let s = s.to_f64();
        if !s.is_finite() {
            return Err(GramError::NonFinite);
        }
        ahead += ties.ahead(s, t, j, target) as usize;
    }
    Ok(ahead + 1)
}

/// Percentage of ranks ≤ k.
pub fn recall_at_k(ranks: &[u32], k: u32) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    let hits = ranks.iter().filter(|&&r| r <= k).count();
    100.0 * hits as f64 / ranks.len() as f64
}

/// Retrieval summary in one direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankSummary {
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
    /// Median of the 1-based ranks (mean of the two middle ones for an even count).
    pub medr: f64,
    pub meanr: f64,
}

/// Summarise 1-based ranks; sorts `ranks` in place (the only scratch it needs).
pub fn summarize_ranks(ranks: &mut [u32]) -> Result<RankSummary, GramError> {
    if ranks.is_empty() {
        return Err(GramError::EmptyInput);
    }
    let (r1, r5, r10) = (
        recall_at_k(ranks, 1),
        recall_at_k(ranks, 5),
        recall_at_k(ranks, 10),
    );
    ranks.sort_unstable();
    let n = ranks.len();
    let medr = if n % 2 == 1 {
        ranks[n / 2] as f64
    } else {
        0.5 * (ranks[n / 2 - 1] as f64 + ranks[n / 2] as f64)
    };
    let meanr = ranks.iter().map(|&r| r as f64).sum::<f64>() / n as f64;
    Ok(RankSummary {
        r1,
        r5,
        r10,
        medr,
        meanr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_count_ties_against_the_target() {
        let row = [0.3f32, 0.1, 0.3, 0.5];
        assert_eq!(rank_of(&row, 1).unwrap(), 1);
        assert_eq!(rank_of(&row, 0).unwrap(), 3); // 0.1 and the tied 0.3 come first
        assert_eq!(rank_of(&row, 2).unwrap(), 3);
        assert_eq!(rank_of(&row, 3).unwrap(), 4);
        assert_eq!(rank_of(&[1.0f32; 5], 2).unwrap(), 5);
        assert!(rank_of(&row, 4).is_err());
        assert_eq!(rank_of(&[0.1f32, f32::NAN], 0), Err(GramError::NonFinite));
    }

    #[test]
    fn summary_by_hand() {
        let mut ranks = [1u32, 2, 7, 1, 12, 3];
        let s = summarize_ranks(&mut ranks).unwrap();
        assert!((s.r1 - 100.0 * 2.0 / 6.0).abs() < 1e-12);
        assert!((s.r5 - 100.0 * 4.0 / 6.0).abs() < 1e-12);
        assert!((s.r10 - 100.0 * 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.medr, 2.5);
        assert!((s.meanr - 26.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn tie_rules_on_a_row_of_ties() {
        // Target 1 ties with candidates 0 and 3; candidate 2 is better, 4 worse.
        let row = [0.5f64, 0.5, 0.1, 0.5, 0.9];
        assert_eq!(rank_with(&row, 1, Ties::Pessimistic), Ok(4));
        assert_eq!(rank_with(&row, 1, Ties::Optimistic), Ok(2));
        assert_eq!(rank_with(&row, 1, Ties::Stable), Ok(3));
        assert_eq!(rank_of(&row, 1), Ok(4));
    }
}
