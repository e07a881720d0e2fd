//! The single-precision scoring path ([`Arithmetic::Single`]) against the exact volume: its
//! contract (≤ 1e-6 relative, exact zeros, never NaN) on random, aligned, near-collinear,
//! duplicated and out-of-range inputs, and which tier settles which pairs.

use gram_nostd::{
    Arithmetic, Candidate, GramError, ScoreStats, candidate_at, score_row_with, volume,
};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    /// A unit vector in n dimensions (uniform elements, normalised).
    fn unit(&mut self, n: usize) -> Vec<f64> {
        let v: Vec<f64> = (0..n).map(|_| self.uniform()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Scores `anchors` (rows of length n) against `cands` (k−1 modality matrices of `count` rows)
/// on the single path, with candidates prepared in both arithmetics (and the single-prepared
/// ones also scored on the f64 path); checks every output against `volume` and returns the
/// summed stats of the single path with double-prepared candidates.
fn check_against_volume(anchors: &[Vec<f32>], mods: &[Vec<f32>], n: usize) -> ScoreStats {
    let stats = check_with(anchors, mods, n, Arithmetic::Double, Arithmetic::Single);
    check_with(anchors, mods, n, Arithmetic::Single, Arithmetic::Single);
    check_with(anchors, mods, n, Arithmetic::Single, Arithmetic::Double);
    stats
}

fn check_with(
    anchors: &[Vec<f32>],
    mods: &[Vec<f32>],
    n: usize,
    prep: Arithmetic,
    scoring: Arithmetic,
) -> ScoreStats {
    let count = mods[0].len() / n;
    let mods: Vec<&[f32]> = mods.iter().map(|m| m.as_slice()).collect();
    let cands: Vec<Candidate> = (0..count)
        .map(|j| {
            let rows: Vec<&[f32]> = mods.iter().map(|m| &m[j * n..(j + 1) * n]).collect();
            let c = Candidate::new_with(prep, &rows, n).unwrap();
            // The record keeps everything, the preparation's precision included.
            let mut rec = vec![0.0; Candidate::record_len(rows.len())];
            c.record(&mut rec).unwrap();
            let back = Candidate::from_record(rows.len(), n, &rec).unwrap();
            assert_eq!(back.gram_rel_err(), c.gram_rel_err());
            back
        })
        .collect();
    let mut out = vec![0.0f32; count];
    let mut total = ScoreStats::default();
    for a in anchors {
        let s = score_row_with(scoring, a, &mods, &cands, &mut out).unwrap();
        total.exact_recomputes += s.exact_recomputes;
        total.refined += s.refined;
        for (j, &got) in out.iter().enumerate() {
            let mut tuple = vec![a.as_slice()];
            tuple.extend(mods.iter().map(|m| &m[j * n..(j + 1) * n]));
            let exact = volume(&tuple).unwrap();
            assert!(!got.is_nan());
            if exact == 0.0 {
                assert_eq!(got, 0.0, "pair ({j}) must be exactly 0");
            } else {
                let rel = (got as f64 - exact).abs() / exact;
                let limit = if scoring == Arithmetic::Double {
                    1.2e-7
                } else {
                    1e-6
                };
                assert!(
                    rel <= limit,
                    "pair {j} ({prep:?} prep, {scoring:?} scoring): {got} vs {exact} (rel {rel:e})"
                );
            }
        }
    }
    total
}

/// `count` candidates of k−1 unit rows, and `anchors` unit anchors; with `align` > 0 each
/// anchor is drawn towards the sum of candidate j = its index's rows (a matched pair).
fn data(
    n: usize,
    k: usize,
    count: usize,
    anchors: usize,
    align: f64,
    seed: u64,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = Rng(seed);
    let rows: Vec<Vec<Vec<f64>>> = (0..k - 1)
        .map(|_| (0..count).map(|_| rng.unit(n)).collect())
        .collect();
    let anchors = (0..anchors)
        .map(|i| {
            let noise = rng.unit(n);
            let a: Vec<f64> = (0..n)
                .map(|d| align * rows.iter().map(|r| r[i % count][d]).sum::<f64>() + noise[d])
                .collect();
            to_f32(&a)
        })
        .collect();
    let mods = rows.iter().map(|r| to_f32(&r.concat())).collect();
    (anchors, mods)
}

#[test]
fn random_unit_rows_stay_on_the_f32_fast_path() {
    for n in [128, 512] {
        for k in [3, 4, 5] {
            let (anchors, mods) = data(n, k, 64, 8, 0.0, (n * k) as u64);
            let stats = check_against_volume(&anchors, &mods, n);
            println!("n = {n}, k = {k}: {stats:?} of 512 pairs");
            assert_eq!(stats.exact_recomputes, 0, "n = {n}, k = {k}");
            // k = 3 always certifies; larger k amplifies the dot products' error through W.
            let allowed = if k == 3 { 0 } else { 512 / 50 };
            assert!(stats.refined <= allowed, "n = {n}, k = {k}: {stats:?}");
        }
    }
}

#[test]
fn aligned_pairs_are_refined_and_meet_the_contract() {
    // Anchors 10× closer to their matched candidate's span than to anything else: the matched
    // pairs' volumes are small and their f32 bound fails; the refinement must settle them.
    let (anchors, mods) = data(512, 3, 16, 16, 10.0, 11);
    let stats = check_against_volume(&anchors, &mods, 512);
    assert!(stats.refined >= 1, "{stats:?}");
    assert_eq!(stats.exact_recomputes, 0, "{stats:?}");
}

#[test]
fn near_collinear_and_duplicated_pairs_are_recomputed_exactly() {
    let n = 64;
    let mut rng = Rng(5);
    let m1 = rng.unit(n);
    let m2 = rng.unit(n);
    // Anchors at distance ε from span(m1, m2), down to ε = 1e-7, and m1 itself (volume 0).
    let mut anchors = Vec::new();
    for eps in [1e-2, 1e-4, 1e-5, 1e-6, 1e-7, 0.0] {
        let d = rng.unit(n);
        anchors.push(to_f32(
            &(0..n)
                .map(|i| 0.6 * m1[i] + 0.8 * m2[i] + eps * d[i])
                .collect::<Vec<_>>(),
        ));
    }
    anchors.push(to_f32(&m1));
    let stats = check_against_volume(&anchors, &[to_f32(&m1), to_f32(&m2)], n);
    assert!(stats.exact_recomputes >= 2, "{stats:?}");
    // A duplicated candidate vector and a zero anchor: exact zeros without any recompute.
    let stats = check_against_volume(&[to_f32(&m2), vec![0.0; n]], &[to_f32(&m1), to_f32(&m1)], n);
    assert_eq!(stats, ScoreStats::default());
}

#[test]
fn out_of_range_magnitudes_take_the_f64_path() {
    let n = 16;
    let (anchors, mods) = data(n, 3, 4, 2, 0.0, 9);
    let scaled = |rows: &[Vec<f32>], s: f32| -> Vec<Vec<f32>> {
        rows.iter()
            .map(|r| r.iter().map(|x| x * s).collect())
            .collect()
    };
    // Largest magnitudes outside [2^-40, 2^40), volumes still normal f32 numbers.
    for scale in [1e-20f32, 1e15, 1e-17] {
        let stats = check_against_volume(&scaled(&anchors, scale), &mods, n);
        assert_eq!(stats.refined, 8, "anchors at scale {scale}: {stats:?}");
        let stats = check_against_volume(&anchors, &scaled(&mods, scale.max(1e-17)), n);
        assert_eq!(stats.refined, 8, "candidates at scale {scale}: {stats:?}");
    }
    let mods: Vec<&[f32]> = mods.iter().map(|m| m.as_slice()).collect();
    let cands = [candidate_at(&mods, n, 0).unwrap()];
    let m: Vec<&[f32]> = mods.iter().map(|m| &m[..n]).collect();
    let mut out = [0.0f32];
    let bad: Vec<f32> = (0..n)
        .map(|i| if i == 3 { f32::NAN } else { 1.0 })
        .collect();
    assert_eq!(
        score_row_with(Arithmetic::Single, &bad, &m, &cands, &mut out),
        Err(GramError::NonFinite)
    );
}

/// A random tuple with a random conditioning: k vectors of length n, the anchor mixed from
/// the others plus noise of a random size, magnitudes 2^±30.
#[derive(Clone, Debug)]
struct Mixed {
    n: usize,
    vecs: Vec<Vec<f32>>,
}

impl Arbitrary for Mixed {
    fn arbitrary(g: &mut Gen) -> Mixed {
        let k = 2 + usize::arbitrary(g) % 4;
        let n = k + usize::arbitrary(g) % 200;
        let mut rng = Rng(u64::arbitrary(g));
        let noise = 10f64.powi(-((u8::arbitrary(g) % 9) as i32));
        let mag = 2f64.powi(i32::arbitrary(g) % 30);
        let others: Vec<Vec<f64>> = (1..k).map(|_| rng.unit(n)).collect();
        let mut anchor: Vec<f64> = rng.unit(n).into_iter().map(|x| x * noise).collect();
        for o in &others {
            let w = rng.uniform();
            anchor.iter_mut().zip(o).for_each(|(a, x)| *a += w * x);
        }
        let mut vecs = vec![to_f32(&anchor.iter().map(|x| x * mag).collect::<Vec<_>>())];
        vecs.extend(others.iter().map(|o| to_f32(o)));
        Mixed { n, vecs }
    }
}

#[test]
fn single_path_meets_the_contract_on_random_conditioning() {
    fn p(t: Mixed) -> TestResult {
        let mods: Vec<Vec<f32>> = t.vecs[1..].to_vec();
        check_against_volume(&t.vecs[..1], &mods, t.n);
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(p as fn(Mixed) -> TestResult);
}
