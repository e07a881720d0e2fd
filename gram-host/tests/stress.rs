//! Adversarial stress test, ignored by default: `scripts/stress.sh` runs it in
//! release. ≥ 10^6 tuples from hostile distributions through gram-nostd's `volume` and the
//! CPU backend (`Scorer::volume_matrix`): every result must be finite, non-negative and within
//! Hadamard's bound; the worst relative error against an f64 Householder QR reference
//! (nalgebra) is reported per category. Note that f64 QR is itself only accurate to
//! ~1e-16·κ, so for near-collinear tuples its error, not ours, dominates the figure; the
//! axis-aligned near-collinear category has exact volumes and measures ours alone.

use gram_host::cpu::Scorer;
use gram_nostd::{GramError, log_volume, volume};
use nalgebra::DMatrix;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unif(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unif().max(1e-300), self.unif());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// n from 1 to 4096, log-uniform (most tuples small, some large).
    fn dim(&mut self) -> usize {
        (2f64.powf(self.unif() * 12.0)) as usize
    }
}

/// A hostile tuple and, when known, its exact volume.
fn tuple(cat: usize, rng: &mut Rng) -> (Vec<Vec<f32>>, Option<f64>) {
    let k = 2 + rng.below(15);
    let n = rng.dim().max(1);
    let gauss = |rng: &mut Rng, n: usize| -> Vec<f64> { (0..n).map(|_| rng.normal()).collect() };
    let to32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    match cat {
        // near-collinear at every scale 1e-1 … 1e-12: every vector = base + ε·noise
        0 => {
            let eps = 10f64.powi(-(1 + rng.below(12) as i32));
            let base = gauss(rng, n);
            (
                (0..k)
                    .map(|_| to32(base.iter().map(|b| b + eps * rng.normal()).collect()))
                    .collect(),
                None,
            )
        }
        // axis-aligned near-collinear with an exact answer: v0 = a·e0, vt = b_t·e0 + ε_t·e_t
        1 => {
            let n = n.max(k);
            let mut exact = 1.0f64;
            let vs = (0..k)
                .map(|t| {
                    let mut v = vec![0.0f32; n];
                    let a = (rng.unif() + 0.5) as f32;
                    v[0] = a;
                    if t == 0 {
                        exact *= a as f64;
                    } else {
                        let e = 2f32.powi(-(rng.below(40) as i32));
                        v[t] = e;
                        exact *= e as f64;
                    }
                    v
                })
                .collect();
            (vs, Some(exact))
        }
        // mixed magnitudes 1e-30 … 1e30 (per vector)
        2 => (
            (0..k)
                .map(|_| {
                    let s = 10f64.powf(rng.unif() * 60.0 - 30.0);
                    to32(gauss(rng, n).into_iter().map(|x| x * s).collect())
                })
                .collect(),
            None,
        ),
        // subnormal vectors (and normal ones beside them)
        3 => (
            (0..k)
                .map(|t| {
                    let s = if t % 2 == 0 { 1e-40 } else { 1.0 };
                    to32(gauss(rng, n).into_iter().map(|x| x * s).collect())
                })
                .collect(),
            None,
        ),
        // duplicates: exact volume 0
        4 => {
            let mut vs: Vec<Vec<f32>> = (0..k - 1).map(|_| to32(gauss(rng, n))).collect();
            let d = vs[rng.below(k - 1)].clone();
            vs.insert(rng.below(k), d);
            (vs, Some(0.0))
        }
        // a zero vector: exact volume 0
        _ => {
            let mut vs: Vec<Vec<f32>> = (0..k).map(|_| to32(gauss(rng, n))).collect();
            let z = rng.below(k);
            vs[z] = vec![0.0; n];
            (vs, Some(0.0))
        }
    }
}

const CATEGORIES: [&str; 6] = [
    "near-collinear 1e-1..1e-12",
    "axis-aligned near-collinear (exact)",
    "mixed magnitudes 1e-30..1e30",
    "subnormals",
    "duplicates",
    "zero vectors",
];

fn hadamard_f64(vs: &[Vec<f32>]) -> f64 {
    vs.iter().map(|v| norm(v)).product()
}

fn norm(v: &[f32]) -> f64 {
    // Scaled so that squares of f32 extremes neither overflow nor underflow.
    let m = v.iter().fold(0.0f64, |m, x| m.max((*x as f64).abs()));
    if m == 0.0 {
        return 0.0;
    }
    m * v
        .iter()
        .map(|&x| (x as f64 / m).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// ln of the f64 Householder-QR volume (columns normalised first), and ln of the normalised
/// volume Π|R_ii| (how far from dependent the tuple is); −inf for zero.
fn qr_log_volume(vs: &[Vec<f32>]) -> (f64, f64) {
    let (k, n) = (vs.len(), vs[0].len());
    let norms: Vec<f64> = vs.iter().map(|v| norm(v)).collect();
    if k > n || norms.contains(&0.0) {
        return (f64::NEG_INFINITY, f64::NEG_INFINITY);
    }
    let a = DMatrix::from_fn(n, k, |i, j| vs[j][i] as f64 / norms[j]);
    let r: f64 = a.qr().r().diagonal().iter().map(|x| x.abs().ln()).sum();
    (r + norms.iter().map(|x| x.ln()).sum::<f64>(), r)
}

#[test]
#[ignore = "stress: run scripts/stress.sh (release, ~1 min)"]
fn hostile_tuples_never_break_the_invariants() {
    let per_category: usize = std::env::var("GRAM_STRESS_PER_CATEGORY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(170_000);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    // The GPU backend where an adapter exists (required when GRAM_REQUIRE_GPU=1).
    let gpu = match gram_gpu::GpuContext::new() {
        Ok(c) => Some(c),
        Err(e) if std::env::var("GRAM_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("GRAM_REQUIRE_GPU=1 but {e}")
        }
        Err(e) => {
            println!("GPU backend skipped: {e}");
            None
        }
    };
    let (mut bad, mut total, mut backend_pairs) = (0usize, 0usize, 0usize);
    println!(
        "| category | tuples | NaN/neg/out-of-bound | worst rel. error vs f64 QR (where QR has digits) | worst vs exact | CPU backend pairs | CPU ≠ nostd (rel > 1e-5) | GPU pairs | GPU worst rel. error vs nostd (abs. below 1e-30) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (c, name) in CATEGORIES.iter().enumerate() {
        let (mut worst_qr, mut worst_exact, mut cat_bad, mut mismatch, mut pairs) =
            (0.0f64, 0.0f64, 0usize, 0usize, 0usize);
        let mut batch: Vec<(Vec<Vec<f32>>, f64)> = Vec::new();
        let (mut gpu_pairs, mut gpu_worst, mut gpu_worst_abs) = (0usize, 0.0f64, 0.0f64);
        for t in 0..per_category {
            let (vs, exact) = tuple(c, &mut rng);
            let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
            // Compare in the log domain: (1e±30)^16 leaves f64's range, ln does not.
            let lv = log_volume(&refs).expect("finite input");
            let log_hadamard: f64 = vs.iter().map(|v| norm(v).ln()).sum();
            let v = match volume(&refs) {
                Ok(v) => v,
                Err(GramError::OutOfRange) if lv > 709.0 => f64::INFINITY,
                Err(e) => panic!("{e:?}"),
            };
            if lv.is_nan() || lv > log_hadamard + 1e-12 || v.is_nan() || v < 0.0 {
                cat_bad += 1;
            }
            if let Some(e) = exact {
                worst_exact = worst_exact.max(if e == 0.0 { v } else { (v - e).abs() / e });
            }
            // The QR reference is O(n·k²): check a sample of the big ones, and only where QR
            // itself has digits (normalised volume > 1e-12).
            if vs[0].len() * vs.len() <= 4096 || t % 50 == 0 {
                let (lq, lq_normalised) = qr_log_volume(&vs);
                if lq_normalised > -27.6 {
                    worst_qr = worst_qr.max((lv - lq).abs());
                }
            }
            // Every 20th tuple also goes through the CPU backend (as a 1×1 problem with a
            // 3-candidate neighbourhood of the same shape, so tiles and fallbacks are exercised).
            if let Some(ctx) = &gpu
                && t % 100 == 0
                && vs[0].len() <= 256
                && v <= f32::MAX as f64
            {
                let n = vs[0].len();
                let mods: Vec<&[f32]> = vs[1..].iter().map(|m| m.as_slice()).collect();
                let got = gram_gpu::GpuScorer::new(ctx, &mods, 1, n)
                    .and_then(|s| s.volume_matrix(&vs[0]));
                match got {
                    Ok(g) => {
                        let g = g[0] as f64;
                        if !(g >= 0.0 && g.is_finite()) || g > hadamard_f64(&vs) * (1.0 + 1e-5) {
                            cat_bad += 1;
                        }
                        // f32 output: volumes below 1e-30 are compared absolutely.
                        if v < 1e-30 {
                            gpu_worst_abs = gpu_worst_abs.max((g - v).abs());
                        } else {
                            gpu_worst = gpu_worst.max((g - v).abs() / v);
                        }
                    }
                    Err(e) => panic!("GPU backend error {e}"),
                }
                gpu_pairs += 1;
            }
            if t % 20 == 0 && vs[0].len() <= 1024 && v.is_finite() {
                batch.push((vs, v));
            }
        }
        for (vs, v) in &batch {
            let n = vs[0].len();
            let mods: Vec<&[f32]> = vs[1..].iter().map(|m| m.as_slice()).collect();
            let scorer = Scorer::new(&mods, 1, n).unwrap();
            let mut out = [0.0f32];
            match scorer.volume_matrix(&vs[0], &mut out) {
                Ok(_) => {
                    let got = out[0] as f64;
                    if !(got >= 0.0 && got.is_finite()) {
                        cat_bad += 1;
                    }
                    let rel = if *v == 0.0 { got } else { (got - v).abs() / v };
                    if rel > 1e-5 && (got - v).abs() > f32::MIN_POSITIVE as f64 {
                        mismatch += 1;
                    }
                }
                Err(gram_nostd::GramError::OutOfRange) => assert!(*v > f32::MAX as f64),
                Err(e) => panic!("backend error {e:?}"),
            }
            pairs += 1;
        }
        println!(
            "| {name} | {per_category} | {cat_bad} | {worst_qr:.1e} | {} | {pairs} | {mismatch} | {gpu_pairs} | {gpu_worst:.1e} ({gpu_worst_abs:.0e}) |",
            if CATEGORIES[c].contains("exact") || c >= 4 {
                format!("{worst_exact:.1e}")
            } else {
                "-".into()
            }
        );
        bad += cat_bad + mismatch;
        total += per_category;
        backend_pairs += pairs;
    }
    println!(
        "{total} tuples through gram-nostd, {backend_pairs} through the CPU backend; violations: {bad}"
    );
    assert!(total >= 1_000_000 || per_category < 170_000);
    assert_eq!(bad, 0);
}
