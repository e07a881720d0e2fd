//! quickcheck properties of the volume (and of the paths built on it).

use gram_nostd::{Candidate, GramError, GramFactor, dot::dot_dd, log_volume, score_row, volume};
use nalgebra::DMatrix;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

/// A random tuple: k vectors of length n, elements ~ uniform(−1, 1) times a common magnitude
/// 2^e (so every property is also exercised far from 1).
#[derive(Clone, Debug)]
struct Tuple {
    vecs: Vec<Vec<f64>>,
}

impl Arbitrary for Tuple {
    fn arbitrary(g: &mut Gen) -> Tuple {
        let k = 1 + usize::arbitrary(g) % 6;
        let n = 1 + usize::arbitrary(g) % 24;
        let e = i32::arbitrary(g) % 60;
        let mag = 2f64.powi(e);
        let vecs = (0..k)
            .map(|_| {
                (0..n)
                    .map(|_| (u32::arbitrary(g) as f64 / u32::MAX as f64 * 2.0 - 1.0) * mag)
                    .map(|x| x as f32 as f64) // representable in f32 too
                    .collect()
            })
            .collect();
        Tuple { vecs }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Tuple>> {
        let vecs = self.vecs.clone();
        let drops = if vecs.len() > 1 { 0..vecs.len() } else { 0..0 };
        Box::new(drops.map(move |drop| {
            Tuple {
                vecs: vecs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != drop)
                    .map(|(_, v)| v.clone())
                    .collect(),
            }
        }))
    }
}

impl Tuple {
    fn refs(&self) -> Vec<&[f64]> {
        self.vecs.iter().map(|v| v.as_slice()).collect()
    }
    fn f32s(&self) -> Vec<Vec<f32>> {
        self.vecs
            .iter()
            .map(|v| v.iter().map(|&x| x as f32).collect())
            .collect()
    }
    fn norm_product(&self) -> f64 {
        self.vecs
            .iter()
            .map(|v| v.iter().map(|x| x * x).sum::<f64>().sqrt())
            .product()
    }
    fn k(&self) -> usize {
        self.vecs.len()
    }
    fn n(&self) -> usize {
        self.vecs[0].len()
    }
}

/// Reference: f64 Householder QR (nalgebra), vol = Π|R_ii|. Accurate to ~κ·1e-16.
fn qr_volume(t: &Tuple) -> f64 {
    if t.k() > t.n() {
        return 0.0;
    }
    let a = DMatrix::from_fn(t.n(), t.k(), |i, j| t.vecs[j][i]);
    a.qr().r().diagonal().iter().map(|x| x.abs()).product()
}

fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + abs
}

fn check<F: quickcheck::Testable>(f: F) {
    QuickCheck::new().tests(500).quickcheck(f);
}

#[test]
fn agrees_with_f64_qr_when_well_conditioned() {
    fn p(t: Tuple) -> TestResult {
        let v = volume(&t.refs()).unwrap();
        let q = qr_volume(&t);
        // QR's own error is ~k·n·1e-16 relative to Π‖v‖ in absolute terms.
        TestResult::from_bool(close(v, q, 1e-10, 1e-13 * t.norm_product()))
    }
    check(p as fn(Tuple) -> TestResult);
}

#[test]
fn permutation_invariance() {
    fn p(t: Tuple, rot: usize, swap: usize) -> TestResult {
        let mut r = t.refs();
        let k = r.len();
        r.rotate_left(rot % k);
        r.swap(0, swap % k);
        let (a, b) = (volume(&t.refs()).unwrap(), volume(&r).unwrap());
        TestResult::from_bool(close(a, b, 1e-13, 1e-15 * t.norm_product()))
    }
    check(p as fn(Tuple, usize, usize) -> TestResult);
}

#[test]
fn scale_homogeneity() {
    fn p(t: Tuple, which: usize, c: f64, e: i16) -> TestResult {
        if !c.is_finite() || c == 0.0 {
            return TestResult::discard();
        }
        let i = which % t.k();
        let base = volume(&t.refs()).unwrap();
        // A power of two scales exactly, at any magnitude.
        let pow2 = 2f64.powi((e % 300) as i32);
        let mut s = t.clone();
        s.vecs[i].iter_mut().for_each(|x| *x *= pow2);
        let got = volume(&s.refs()).unwrap();
        if got != base * pow2 && !(base * pow2).is_subnormal() {
            return TestResult::failed();
        }
        // A general factor scales up to the rounding of c·v (f64).
        let c = c.clamp(-1e6, 1e6);
        let mut s = t.clone();
        s.vecs[i].iter_mut().for_each(|x| *x *= c);
        let got = volume(&s.refs()).unwrap();
        TestResult::from_bool(close(
            got,
            c.abs() * base,
            1e-12,
            1e-14 * c.abs() * t.norm_product(),
        ))
    }
    check(p as fn(Tuple, usize, f64, i16) -> TestResult);
}

#[test]
fn rotation_invariance() {
    fn p(t: Tuple, seed: u64) -> TestResult {
        let n = t.n();
        let mut rng = gram_nostd::uniform::Uniform::new(seed);
        let mut next = || rng.next().unwrap();
        let q = DMatrix::from_fn(n, n, |_, _| next()).qr().q();
        let rotated: Vec<Vec<f64>> = t
            .vecs
            .iter()
            .map(|v| {
                (&q * nalgebra::DVector::from_column_slice(v))
                    .iter()
                    .copied()
                    .collect()
            })
            .collect();
        let r: Vec<&[f64]> = rotated.iter().map(|v| v.as_slice()).collect();
        let (a, b) = (volume(&t.refs()).unwrap(), volume(&r).unwrap());
        // Rotation in f64 perturbs each vector by ~n·1e-16 of its norm.
        TestResult::from_bool(close(a, b, 1e-9, 1e-13 * t.norm_product()))
    }
    check(p as fn(Tuple, u64) -> TestResult);
}

#[test]
fn hadamard_bound() {
    fn p(t: Tuple) -> TestResult {
        let v = volume(&t.refs()).unwrap();
        TestResult::from_bool(v <= t.norm_product() * (1.0 + 1e-14))
    }
    check(p as fn(Tuple) -> TestResult);
}

#[test]
fn zero_for_dependent_sets() {
    fn p(t: Tuple, coef: Vec<i8>, dup: usize) -> TestResult {
        let mut s = t.clone();
        // A duplicated vector: exactly zero.
        s.vecs.push(t.vecs[dup % t.k()].clone());
        if volume(&s.refs()).unwrap() != 0.0 {
            return TestResult::failed();
        }
        // A small-integer combination (exact in f64 for these magnitudes): zero up to rounding.
        let mut s = t.clone();
        let n = t.n();
        let comb: Vec<f64> = (0..n)
            .map(|i| {
                (0..t.k())
                    .map(|j| *coef.get(j).unwrap_or(&1) as f64 * t.vecs[j][i])
                    .sum()
            })
            .collect();
        s.vecs.push(comb);
        let v = volume(&s.refs()).unwrap();
        let bound = 1e-13 * s.norm_product();
        TestResult::from_bool(v <= bound)
    }
    check(p as fn(Tuple, Vec<i8>, usize) -> TestResult);
}

#[test]
fn two_vectors_give_norms_times_sine() {
    fn p(theta: f64, r1: f64, r2: f64, n: u8, seed: u64) -> TestResult {
        if !(theta.is_finite() && r1.is_finite() && r2.is_finite()) || r1 == 0.0 || r2 == 0.0 {
            return TestResult::discard();
        }
        let n = 2 + n as usize % 30;
        let (r1, r2, theta) = (
            r1.abs().clamp(1e-100, 1e100),
            r2.abs().clamp(1e-100, 1e100),
            theta % 7.0,
        );
        let mut rng = gram_nostd::uniform::Uniform::new(seed);
        let mut next = || rng.next().unwrap();
        let q = DMatrix::from_fn(n, n, |_, _| next()).qr().q();
        let a: Vec<f64> = (0..n).map(|i| r1 * q[(i, 0)]).collect();
        let b: Vec<f64> = (0..n)
            .map(|i| r2 * (theta.cos() * q[(i, 0)] + theta.sin() * q[(i, 1)]))
            .collect();
        let v = volume(&[&a[..], &b]).unwrap();
        TestResult::from_bool(close(v, r1 * r2 * theta.sin().abs(), 1e-9, 1e-14 * r1 * r2))
    }
    check(p as fn(f64, f64, f64, u8, u64) -> TestResult);
}

#[test]
fn never_nan_or_negative_for_any_finite_f32_bits() {
    fn p(bits: Vec<u32>, k: u8) -> TestResult {
        let k = 1 + k as usize % 16;
        let vals: Vec<f32> = bits
            .iter()
            .map(|&b| f32::from_bits(b))
            .filter(|x| x.is_finite())
            .collect();
        let n = vals.len() / k;
        if n == 0 {
            return TestResult::discard();
        }
        let refs: Vec<&[f32]> = (0..k).map(|i| &vals[i * n..(i + 1) * n]).collect();
        let lv = log_volume(&refs).unwrap();
        if lv.is_nan() || lv == f64::INFINITY {
            return TestResult::failed();
        }
        match volume(&refs) {
            Ok(v) => TestResult::from_bool(v >= 0.0 && v.is_finite()),
            Err(GramError::OutOfRange) => TestResult::from_bool(lv > 700.0),
            Err(_) => TestResult::failed(),
        }
    }
    check(p as fn(Vec<u32>, u8) -> TestResult);
}

#[test]
fn fast_pair_path_agrees_with_the_exact_path() {
    fn p(t: Tuple) -> TestResult {
        if t.k() < 2 {
            return TestResult::discard();
        }
        let f = t.f32s();
        let n = t.n();
        let refs: Vec<&[f32]> = f.iter().map(|v| v.as_slice()).collect();
        let cand = Candidate::new(&refs[1..], n).unwrap();
        let mut out = [0.0f32];
        let exact = volume(&refs).unwrap();
        let stats = match score_row(refs[0], &refs[1..], &[cand], &mut out) {
            Ok(s) => s,
            // f32 output cannot hold it: refused, not turned into inf.
            Err(GramError::OutOfRange) => return TestResult::from_bool(exact > f32::MAX as f64),
            Err(_) => return TestResult::failed(),
        };
        let ok = close(out[0] as f64, exact, 1.2e-7, 0.0) || (exact as f32) == out[0];
        TestResult::from_bool(ok && stats.exact_recomputes <= 1)
    }
    check(p as fn(Tuple) -> TestResult);
}

#[test]
fn gram_factor_agrees_with_volume_when_well_conditioned() {
    fn p(t: Tuple) -> TestResult {
        let k = t.k();
        let mut g = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                g[i * k + j] = dot_dd(&t.vecs[i], 1.0, &t.vecs[j], 1.0).to_f64();
            }
        }
        let f = GramFactor::new(&g, k).unwrap();
        let v = volume(&t.refs()).unwrap();
        let cond = f.condition();
        if cond.is_nan() || cond >= 1e6 {
            return TestResult::discard();
        }
        TestResult::from_bool(close(
            f.volume().unwrap(),
            v,
            1e-15 * cond * k as f64 + 1e-15,
            0.0,
        ))
    }
    check(p as fn(Tuple) -> TestResult);
}

/// Found by the volume fuzzer (CI smoke, 2026-11-23): eleven vectors whose 10-vector candidate
/// has its last pivot just below the zero tolerance (3.05e-30 vs 3.06e-30 relative) while the
/// whole tuple's is just above it. `score_row` returned 0 from the "degenerate" candidate where
/// `volume` returned 3.2e46 (exact: 3.2474509e46, by rational arithmetic). Now such a candidate
/// sends every pair to the exact path, and the two agree.
#[test]
fn near_threshold_candidate_agrees_with_volume() {
    let data = include_bytes!("../../fuzz/corpus/volume/regression-near-threshold-candidate");
    let k = 1 + (data[0] as usize % 16);
    let values: Vec<f32> = data[1..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let n = values.len() / k;
    let vectors: Vec<&[f32]> = (0..k).map(|i| &values[i * n..(i + 1) * n]).collect();
    let exact = gram_nostd::volume(&vectors).unwrap();
    assert!(exact > 3.2e46 && exact < 3.3e46, "{exact}");
    let mods: Vec<&[f32]> = vectors[1..].to_vec();
    let cand = gram_nostd::candidate_at(&mods, n, 0).unwrap();
    assert!(!cand.is_degenerate());
    // The exact path decides, and 3.2e46 does not fit score_row's f32 output: OutOfRange,
    // not the 0 it used to return.
    let mut out = [0.0f32];
    let r = gram_nostd::score_row(vectors[0], &mods, std::slice::from_ref(&cand), &mut out);
    assert_eq!(r, Err(GramError::OutOfRange));
    // Scaled into f32's range (÷8 per vector), the score equals the volume.
    let scale = 0.125f32;
    let small: Vec<Vec<f32>> = vectors
        .iter()
        .map(|v| v.iter().map(|x| x * scale).collect())
        .collect();
    let small_refs: Vec<&[f32]> = small.iter().map(|v| v.as_slice()).collect();
    let exact = gram_nostd::volume(&small_refs).unwrap();
    let mods: Vec<&[f32]> = small_refs[1..].to_vec();
    let cand = gram_nostd::candidate_at(&mods, n, 0).unwrap();
    let stats = gram_nostd::score_row(small_refs[0], &mods, &[cand], &mut out).unwrap();
    assert_eq!(stats.exact_recomputes, 1);
    assert!(
        ((out[0] as f64) - exact).abs() <= 1e-7 * exact,
        "{} vs {exact}",
        out[0]
    );
}

/// The basis decomposition: vol(a, M)² = w·(‖a‖² − Σ(a·u_t)²) equals the volume's square, w
/// equals vol(M)², and the basis is orthonormal.
#[test]
fn span_basis_decomposes_the_volume() {
    fn p(t: Tuple) -> TestResult {
        if t.k() < 2 {
            return TestResult::discard();
        }
        let refs = t.refs();
        let (a, mods) = (refs[0], &refs[1..]);
        let n = t.n();
        let mut basis = vec![0.0; mods.len() * n];
        let w = gram_nostd::span_basis(mods, &mut basis).unwrap();
        let mods_norms: f64 = mods
            .iter()
            .map(|m| m.iter().map(|x| x * x).sum::<f64>())
            .product();
        let a2: f64 = a.iter().map(|x| x * x).sum();
        let p = mods.len();
        let w_ref = volume(mods).unwrap().powi(2);
        // Rank-deficient M (p > n, or near-dependent) gives w = 0 and a zero basis.
        if w == 0.0 {
            return TestResult::from_bool(
                basis.iter().all(|&x| x == 0.0) && w_ref <= 1e-20 * mods_norms,
            );
        }
        if !close(w, w_ref, 1e-9, 1e-13 * mods_norms) {
            return TestResult::error(format!("w {w} vs {w_ref}"));
        }
        for s in 0..p {
            for r in 0..p {
                let d: f64 = (0..n).map(|i| basis[s * n + i] * basis[r * n + i]).sum();
                let want = if s == r { 1.0 } else { 0.0 };
                if (d - want).abs() > 1e-13 {
                    return TestResult::error(format!("u{s}·u{r} = {d}"));
                }
            }
        }
        let v2 = gram_nostd::volume_sq_by_basis(a, w, &basis).unwrap();
        let v2_ref = volume(&refs).unwrap().powi(2);
        let bound = 1e-9 * v2_ref + (p + 2) as f64 * n as f64 * 4.0 * f64::EPSILON * w * a2;
        TestResult::from_bool((v2 - v2_ref).abs() <= bound)
    }
    check(p as fn(Tuple) -> TestResult);
}

#[test]
fn span_basis_rejects_bad_input() {
    let (a, b) = ([1.0f64, 0.0], [0.0f64, 2.0]);
    let mut basis = [0.0; 4];
    assert_eq!(
        gram_nostd::span_basis(&[&a[..], &b[..]], &mut basis),
        Ok(4.0)
    );
    assert_eq!(basis, [1.0, 0.0, 0.0, 1.0]);
    // vol(x, a, b)² = 4 · (distance of x from the plane)² = 0 in the plane.
    assert_eq!(
        gram_nostd::volume_sq_by_basis(&[3.0f64, -1.0], 4.0, &basis),
        Ok(0.0)
    );
    assert_eq!(
        gram_nostd::span_basis::<f64>(&[], &mut []),
        Err(GramError::EmptyInput)
    );
    assert!(matches!(
        gram_nostd::span_basis(&[&a[..], &[1.0f64][..]], &mut basis),
        Err(GramError::DimensionMismatch { .. })
    ));
    assert_eq!(
        gram_nostd::span_basis(&[&[f64::NAN, 0.0][..]], &mut basis[..2]),
        Err(GramError::NonFinite)
    );
    // Collinear modalities: w = 0.
    assert_eq!(
        gram_nostd::span_basis(&[&a[..], &[-3.0f64, 0.0][..]], &mut basis),
        Ok(0.0)
    );
}
