//! Instructions per pair of `score_row` (both arithmetics) and of the naive float32 recipe a C
//! programmer would write, per candidate of `Candidate::new` and of the naive preparation, on
//! the same data in the same binary; with the accuracy of each against `volume`. Prints one
//! Markdown table row per (D, k) and counts a failure when `score_row` misses its contract.

use crate::clock::instructions;
use crate::platform::hprintln;
use gram_nostd::naive::det_f32;
use gram_nostd::single::sqrt32;
use gram_nostd::{Arithmetic, Candidate, MAX_K, ScoreStats, candidate_at, score_row_with, volume};

pub const CANDIDATES: usize = 64;
const MAX_DIM: usize = 512;
const MAX_M: usize = 4;

/// Modality rows of every configuration (the largest: k = 5, D = 512): 512 KiB of RAM.
pub type Rows = [f32; MAX_M * CANDIDATES * MAX_DIM];

/// xorshift32 uniform in (−1, 1): deterministic data with no dependency.
struct Rng(u32);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
    /// A unit row (normalised in f32).
    fn unit(&mut self, out: &mut [f32]) {
        out.iter_mut().for_each(|x| *x = self.next());
        let norm = sqrt32(out.iter().map(|x| x * x).sum::<f32>());
        out.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The naive dot product: one accumulator, as written in C.
#[inline(never)]
fn plain_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// The naive recipe for one pair: the anchor's k−1 dots, the candidate's precomputed Gram
/// block `gm` (m×m), the k×k determinant by f32 LU, `vsqrt.f32`.
#[inline(never)]
fn naive_pair(a: &[f32], nsq: f32, rows: &[&[f32]], gm: &[f32; MAX_K * MAX_K]) -> f32 {
    let (m, k) = (rows.len(), rows.len() + 1);
    let mut g = [0.0f32; MAX_K * MAX_K];
    g[0] = nsq;
    for (t, row) in rows.iter().enumerate() {
        let d = plain_dot(a, row);
        g[t + 1] = d;
        g[(t + 1) * k] = d;
        for s in 0..m {
            g[(t + 1) * k + s + 1] = gm[t * m + s];
        }
    }
    sqrt32(det_f32(&mut g[..k * k], k).abs())
}

/// The naive preparation of one candidate: its m(m+1)/2 Gram entries.
#[inline(never)]
fn naive_prep(rows: &[&[f32]], gm: &mut [f32; MAX_K * MAX_K]) {
    let m = rows.len();
    for t in 0..m {
        for s in 0..=t {
            let d = plain_dot(rows[t], rows[s]);
            gm[t * m + s] = d;
            gm[s * m + t] = d;
        }
    }
}

/// Instructions of one dot product of length `d` by each kernel: the naive loop, the f32 fast
/// path's blocked sum, the compensated sum of the refinement and of `Candidate::new`.
pub fn kernels(rows: &Rows, d: usize) {
    let (a, b) = (&rows[..d], &rows[d..2 * d]);
    let (_, plain) = instructions(|| plain_dot(a, b));
    let (_, blocked) = instructions(|| gram_nostd::single::dot32(a, b));
    let (_, compensated) = instructions(|| gram_nostd::single::dot2_32(a, b));
    let (_, max) = instructions(|| gram_nostd::single::max_abs32(a));
    let x = core::hint::black_box(2.7f64);
    let (_, sqrt) = instructions(|| libm::sqrt(core::hint::black_box(x)));
    let (_, div) = instructions(|| 1.0 / core::hint::black_box(x));
    let (_, scalbn) = instructions(|| libm::scalbn(core::hint::black_box(x), -7));
    hprintln!("f64: sqrt {} div {} scalbn {}", sqrt, div, scalbn);
    hprintln!(
        "one dot, D = {}: naive loop {}, dot32 {}, dot2_32 {}; max_abs32 {}",
        d,
        plain,
        blocked,
        compensated,
        max
    );
}

fn rel(got: f32, exact: f64) -> f64 {
    if exact == 0.0 {
        (got as f64).abs()
    } else {
        ((got as f64 - exact) / exact).abs()
    }
}

/// Header of the table `run` prints.
pub fn header() {
    hprintln!(
        "| D | k | score_row f32 path | naive recipe | ratio | score_row f64 dots | Candidate::new | naive prep | ratio | volume() | max rel. err. score_row / naive | refined, exact of {} |",
        CANDIDATES
    );
    hprintln!("|---|---|---|---|---|---|---|---|---|---|---|---|");
}

/// One configuration: `CANDIDATES` candidates of k−1 unit rows of length `d`, one unit anchor
/// (or, `aligned`, the sum of candidate 0's rows plus 5 % noise: one matched pair among 64).
/// Returns the number of failed checks.
pub fn run(rows: &mut Rows, d: usize, k: usize, aligned: bool) -> u32 {
    let m = k - 1;
    let mut rng = Rng(0x9E37_79B9 ^ (d * 31 + k) as u32);
    let rows = &mut rows[..m * CANDIDATES * d];
    for r in rows.chunks_exact_mut(d) {
        rng.unit(r);
    }
    let mods: [&[f32]; MAX_M] = core::array::from_fn(|t| {
        let t = t.min(m - 1);
        &rows[t * CANDIDATES * d..(t + 1) * CANDIDATES * d]
    });
    let mods = &mods[..m];
    let mut anchor = [0.0f32; MAX_DIM];
    let anchor = &mut anchor[..d];
    rng.unit(anchor);
    if aligned {
        for (i, x) in anchor.iter_mut().enumerate() {
            *x = 0.05 * *x + mods.iter().map(|t| t[i]).sum::<f32>();
        }
    }
    let anchor = &*anchor;
    let row = |t: usize, j: usize| &mods[t][j * d..(j + 1) * d];

    // Preparation timed per candidate (the array below is filled untimed: moving 64 factors
    // of 1.9 KiB is the array's cost, not the preparation's).
    let mut prep = 0;
    for j in 0..CANDIDATES {
        prep += instructions(|| candidate_at(mods, d, j)).1;
    }
    let cands: [Candidate; CANDIDATES] =
        core::array::from_fn(|j| candidate_at(mods, d, j).expect("candidate"));
    let mut gms = [[0.0f32; MAX_K * MAX_K]; CANDIDATES];
    let ((), naive_prep_n) = instructions(|| {
        for (j, gm) in gms.iter_mut().enumerate() {
            let r: [&[f32]; MAX_M] = core::array::from_fn(|t| row(t.min(m - 1), j));
            naive_prep(&r[..m], gm);
        }
    });

    let mut single = [0.0f32; CANDIDATES];
    let (stats, single_n) =
        instructions(|| score_row_with(Arithmetic::Single, anchor, mods, &cands, &mut single));
    let stats: ScoreStats = stats.unwrap_or(ScoreStats {
        exact_recomputes: usize::MAX,
        refined: 0,
    });
    let mut double = [0.0f32; CANDIDATES];
    let (_, double_n) =
        instructions(|| score_row_with(Arithmetic::Double, anchor, mods, &cands, &mut double));
    let mut naive = [0.0f32; CANDIDATES];
    let ((), naive_n) = instructions(|| {
        let nsq = plain_dot(anchor, anchor);
        for (j, (o, gm)) in naive.iter_mut().zip(&gms).enumerate() {
            let r: [&[f32]; MAX_M] = core::array::from_fn(|t| row(t.min(m - 1), j));
            *o = naive_pair(anchor, nsq, &r[..m], gm);
        }
    });

    let (mut err_single, mut err_naive, mut failures) = (0.0f64, 0.0f64, 0);
    let mut volume_n = 0;
    for j in 0..CANDIDATES {
        let mut t: [&[f32]; MAX_K] = [anchor; MAX_K];
        for (s, slot) in t[1..k].iter_mut().enumerate() {
            *slot = row(s, j);
        }
        let (exact, n) = instructions(|| volume(&t[..k]).unwrap_or(f64::NAN));
        volume_n = volume_n.max(n);
        err_single = err_single.max(rel(single[j], exact));
        err_naive = err_naive.max(rel(naive[j], exact));
        // The contract: 1e-6 relative (exact zeros are compared absolutely, and must be 0).
        let within = |got: f32, limit: f64| rel(got, exact) <= limit; // false for NaN too
        if !within(single[j], 1e-6) || !within(double[j], 1e-7) {
            failures += 1;
        }
    }
    let per = |n: u64| n / CANDIDATES as u64;
    hprintln!(
        "| {}{} | {} | {} | {} | {:.2}× | {} | {} | {} | {:.1}× | {} | {:.1e} / {:.1e} | {}, {} |",
        d,
        if aligned { " (aligned)" } else { "" },
        k,
        per(single_n),
        per(naive_n),
        single_n as f64 / naive_n as f64,
        per(double_n),
        per(prep),
        per(naive_prep_n),
        prep as f64 / naive_prep_n as f64,
        volume_n,
        err_single,
        err_naive,
        stats.refined,
        stats.exact_recomputes
    );
    if failures > 0 {
        hprintln!("  MISMATCH: {} pairs outside the contract", failures);
    }
    failures
}
