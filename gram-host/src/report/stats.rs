//! The numbers behind `gram report`: separation of positive and negative volumes, mutual
//! k-nearest-neighbour alignment, rank correlation, and a 2-D PCA map.

use crate::cpu::sgemm_abt;
use rayon::prelude::*;

/// `m` evenly spaced indices of 0..n (all of them when n ≤ m): row ⌊i·n/m⌋ for i < m.
/// Deterministic, so reports of the same data plot the same points.
pub fn subsample(n: usize, m: usize) -> Vec<usize> {
    if n <= m {
        (0..n).collect()
    } else {
        (0..m).map(|i| i * n / m).collect()
    }
}

/// ROC AUC of "a negative has a larger volume than a positive": P(neg > pos) + ½·P(neg = pos)
/// over every (positive, negative) pair — the Mann–Whitney statistic, exact (sorting, then
/// counting by binary search). 1 = every positive below every negative; 0.5 = no separation.
/// NaN-free for finite inputs; 0.5 when either side is empty.
pub fn separation_auc(positives: &[f32], negatives: &[f32]) -> f64 {
    if positives.is_empty() || negatives.is_empty() {
        return 0.5;
    }
    let mut neg = negatives.to_vec();
    neg.sort_unstable_by(f32::total_cmp);
    let wins: f64 = positives
        .par_iter()
        .map(|&p| {
            let below_or_eq = neg.partition_point(|&x| x <= p);
            let below = neg.partition_point(|&x| x < p);
            (neg.len() - below_or_eq) as f64 + 0.5 * (below_or_eq - below) as f64
        })
        .sum();
    wins / (positives.len() as f64 * neg.len() as f64)
}

/// Rows scaled to unit length (zero rows stay zero).
pub fn unit_rows(x: &[f32], d: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(d) {
        let n = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v = (*v as f64 / n) as f32);
        }
    }
    out
}

/// Cosine of row i of `a` with row i of `b` (unit rows given), for every i.
pub fn row_cosines(a_unit: &[f32], b_unit: &[f32], d: usize) -> Vec<f32> {
    a_unit
        .chunks_exact(d)
        .zip(b_unit.chunks_exact(d))
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum())
        .collect()
}

/// The `k` nearest neighbours of every row among the other rows by cosine (unit rows given),
/// ties by lower index.
fn knn_sets(unit: &[f32], d: usize, k: usize) -> Vec<Vec<u32>> {
    let n = unit.len() / d;
    let mut sim = vec![0f32; n * n];
    sgemm_abt(unit, unit, d, &mut sim);
    sim.par_chunks(n)
        .enumerate()
        .map(|(i, row)| {
            let mut idx: Vec<u32> = (0..n as u32).filter(|&j| j as usize != i).collect();
            let order =
                |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
            let k = k.min(idx.len());
            if k < idx.len() {
                idx.select_nth_unstable_by(k, order);
                idx.truncate(k);
            }
            idx.sort_unstable();
            idx
        })
        .collect()
}

/// Mutual k-NN alignment of two representations of the same n samples (Huh et al., 2024,
/// "The Platonic Representation Hypothesis"): the mean over samples of |N_a(i) ∩ N_b(i)| / k,
/// where N_x(i) are the k nearest other samples of i by cosine in representation x.
/// 1 = identical neighbourhoods; ≈ k/(n−1) for unrelated ones. Needs n > k (else k = n − 1).
/// Memory: two n×n f32 similarity matrices, one at a time.
pub fn mutual_knn(a_unit: &[f32], b_unit: &[f32], d: usize, k: usize) -> f64 {
    let (na, nb) = (knn_sets(a_unit, d, k), knn_sets(b_unit, d, k));
    let n = na.len();
    if n < 2 {
        return 0.0;
    }
    let k = k.min(n - 1) as f64;
    let shared: usize = na
        .iter()
        .zip(&nb)
        .map(|(x, y)| x.iter().filter(|i| y.binary_search(i).is_ok()).count())
        .sum();
    shared as f64 / (n as f64 * k)
}

/// Ranks 1..n with ties given their mean rank.
fn mean_ranks(x: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0f64; x.len()];
    let mut s = 0;
    while s < idx.len() {
        let mut e = s;
        while e + 1 < idx.len() && x[idx[e + 1]] == x[idx[s]] {
            e += 1;
        }
        let mean = (s + e) as f64 / 2.0 + 1.0;
        idx[s..=e].iter().for_each(|&i| r[i] = mean);
        s = e + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson's on mean ranks); 0 when either side is constant.
pub fn spearman(x: &[f32], y: &[f32]) -> f64 {
    let (rx, ry) = (mean_ranks(x), mean_ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// The first two principal components of the rows of `x` [n, d]: each row's coordinates and
/// the fraction of the variance each component explains.
///
/// Covariance in f64, then subspace (block power) iteration with Gram–Schmidt on a d×2 basis,
/// at most 500 iterations, stopping when the basis moves by < 1e-10; the components are exact
/// to that tolerance unless the 2nd and 3rd eigenvalues nearly coincide (then any vector of
/// their plane is as good a map axis). Hand-written because it is 40 lines, where a linear
/// algebra dependency would be most of gram-host's build.
pub fn pca2(x: &[f32], d: usize) -> (Vec<[f32; 2]>, [f64; 2]) {
    let n = x.len() / d;
    let mut mean = vec![0f64; d];
    for row in x.chunks_exact(d) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let centred: Vec<f64> = x
        .chunks_exact(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, m)| v as f64 - m))
        .collect();
    let cov: Vec<f64> = (0..d * d)
        .into_par_iter()
        .map(|e| {
            let (a, b) = (e / d, e % d);
            centred.chunks_exact(d).map(|r| r[a] * r[b]).sum::<f64>() / n.max(1) as f64
        })
        .collect();
    let total: f64 = (0..d).map(|i| cov[i * d + i]).sum();
    // Deterministic start: not orthogonal to the leading components of real data.
    let mut basis: [Vec<f64>; 2] = [
        (0..d).map(|i| 1.0 + (i as f64 * 0.37).sin()).collect(),
        (0..d).map(|i| (i as f64 * 1.93).cos()).collect(),
    ];
    let mut eig = [0f64; 2];
    for _ in 0..500 {
        let mut next = [vec![0f64; d], vec![0f64; d]];
        for c in 0..2 {
            for a in 0..d {
                next[c][a] = (0..d).map(|b| cov[a * d + b] * basis[c][b]).sum();
            }
        }
        // Gram–Schmidt.
        let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(p, q)| p * q).sum::<f64>();
        let p = dot(&next[1], &next[0]) / dot(&next[0], &next[0]).max(f64::MIN_POSITIVE);
        let first = next[0].clone();
        next[1]
            .iter_mut()
            .zip(&first)
            .for_each(|(v, f)| *v -= p * f);
        let mut moved = 0f64;
        for c in 0..2 {
            let norm = dot(&next[c], &next[c]).sqrt();
            eig[c] = norm;
            if norm > 0.0 {
                next[c].iter_mut().for_each(|v| *v /= norm);
            }
            moved = moved.max(1.0 - dot(&next[c], &basis[c]).abs());
        }
        basis = next;
        if moved < 1e-10 {
            break;
        }
    }
    let coords = centred
        .chunks_exact(d)
        .map(|r| {
            let p = |c: usize| r.iter().zip(&basis[c]).map(|(a, b)| a * b).sum::<f64>() as f32;
            [p(0), p(1)]
        })
        .collect();
    let frac = |e: f64| if total > 0.0 { e / total } else { 0.0 };
    (coords, [frac(eig[0]), frac(eig[1])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_pairs_and_ties() {
        assert_eq!(separation_auc(&[0.1, 0.2], &[0.3, 0.4]), 1.0);
        assert_eq!(separation_auc(&[0.5], &[0.3, 0.4]), 0.0);
        // pos 0.3 vs negs {0.3 (tie), 0.4 (win)}: (0.5 + 1) / 2.
        assert_eq!(separation_auc(&[0.3], &[0.3, 0.4]), 0.75);
        assert_eq!(separation_auc(&[], &[1.0]), 0.5);
    }

    #[test]
    fn mutual_knn_is_one_for_identical_and_low_for_unrelated_representations() {
        let (n, d) = (60, 8);
        let mut u = gram_nostd::uniform::Uniform::new(5);
        let a: Vec<f32> = (0..n * d).map(|_| u.next().unwrap() as f32 - 0.5).collect();
        let b: Vec<f32> = (0..n * d).map(|_| u.next().unwrap() as f32 - 0.5).collect();
        let (a, b) = (unit_rows(&a, d), unit_rows(&b, d));
        assert_eq!(mutual_knn(&a, &a, d, 10), 1.0);
        let r = mutual_knn(&a, &b, d, 10);
        assert!(r < 0.35, "{r}");
        // By hand: 4 points on a line in 1-D (unit rows are ±1): neighbours tie, lower index wins.
        let line = [1.0f32, 1.0, -1.0, -1.0];
        assert_eq!(
            knn_sets(&line, 1, 1),
            vec![vec![1], vec![0], vec![3], vec![2]]
        );
    }

    #[test]
    fn spearman_of_monotone_reversed_and_constant() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        assert!((spearman(&x, &[10.0, 20.0, 30.0, 400.0]) - 1.0).abs() < 1e-15);
        assert!((spearman(&x, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-15);
        assert_eq!(spearman(&x, &[1.0; 4]), 0.0);
        assert_eq!(mean_ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
    }

    #[test]
    fn pca_finds_the_axes_of_a_stretched_cloud() {
        // Points along (1, 1, 0)·t with small spread along (1, −1, 0): PC1 ∝ (1, 1, 0).
        let mut x = vec![];
        for i in 0..200 {
            let t = i as f32 / 10.0 - 10.0;
            // Signs + − − + per run of four: uncorrelated with t, so the axes are exact.
            let s = if i % 4 == 0 || i % 4 == 3 { 0.1 } else { -0.1 };
            x.extend_from_slice(&[t + s + 3.0, t - s + 3.0, 0.0]);
        }
        let (coords, frac) = pca2(&x, 3);
        assert!(frac[0] > 0.99 && frac[0] + frac[1] > 0.999999, "{frac:?}");
        // Coordinate on PC1 = ±√2·t (centred), on PC2 = ±√2·s.
        for (i, c) in coords.iter().enumerate() {
            let t = i as f32 / 10.0 - 10.0 + 0.05;
            assert!(
                (c[0].abs() - (2f32.sqrt() * t).abs()).abs() < 1e-3,
                "{i} {c:?}"
            );
            assert!((c[1].abs() - 0.1 * 2f32.sqrt()).abs() < 1e-3, "{i} {c:?}");
        }
    }

    #[test]
    fn subsample_is_evenly_spaced() {
        assert_eq!(subsample(3, 5), vec![0, 1, 2]);
        assert_eq!(subsample(10, 4), vec![0, 2, 5, 7]);
    }
}
