//! erf and exp in f32 written so that loops over slices vectorise (SSE2/AVX2, no calls), for
//! the fused CPU ops (GELU, the smoothed cross-entropy). Why by hand: `f32::exp` and libm's
//! `erff` are a call per element with branches inside, which kept those passes scalar; these
//! are branch-free polynomials with the accuracy stated on each, tested against f64.

/// erf(x) as x·P(x²)/Q(x²) on x clamped to [−4, 4] (the rational approximation of Eigen and
/// XLA for f32): absolute error ≤ 5e-7 over the reals (tested against libm's f64 `erf`).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -1.609_603_3e-2,
        -2.954_6e-3,
        -7.349_906_3e-4,
        -5.692_506_4e-5,
        -2.101_024e-6,
        2.770_681_4e-8,
        -2.726_142_3e-10,
    ];
    const Q: [f32; 5] = [
        -1.426_473_9e-2,
        -7.373_329e-3,
        -1.682_827e-3,
        -2.133_740_6e-4,
        -1.456_607_2e-5,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().rev().fold(0.0, |acc, &c| acc * x2 + c);
    let q = Q.iter().rev().fold(0.0, |acc, &c| acc * x2 + c);
    x * p / q
}

/// e^v for v ≤ 0 (what softmax and the Gaussian need): 2^n·e^r with n = round(v·log₂e),
/// r = v − n·ln 2 (ln 2 in two parts, so r is exact to f32) and e^r by its degree-6 Taylor
/// polynomial (|r| ≤ ln 2 / 2: truncation 1.3e-7). Relative error ≤ 3e-7 for v in
/// [[`EXP_FLUSH_BELOW`], 0]; below it (and for NaN) exactly 0, an absolute error < 1.7e-28;
/// v > 0 is outside its contract. The result is never subnormal.
///
/// Why 0 below −64 rather than e^v: every caller adds the result to terms ≥ 1 (a softmax row
/// holds e^0 at its maximum; the Gaussian's and the sigmoid's terms sit beside Φ(x) or 1), so
/// e^−64 ≈ 1.6e-28 is far below their f32 resolution, while its products with the GEMMs'
/// other operands (a masked key's probability times a value, times an output gradient) land
/// in the subnormal range, where an Intel core takes a microcode assist per multiply
/// ([`crate::ops::subnormals`]); a masked key's score is −10⁹.
#[inline(always)]
pub fn exp_nonpositive(v: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a `round` call.
    const ROUND: f32 = 12_582_912.0;
    let v = v.max(-87.0);
    let shifted = v * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (v - n * LN2_HI) - n * LN2_LO;
    let p = TAYLOR.iter().fold(0.0, |acc, &c| acc * r + c);
    // n as an integer is in the low bits of `shifted` (no float-to-int conversion, which
    // would not vectorise), and 2^n for n in [−126, 0] is its exponent field alone.
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let e = p * f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    // A select, not a branch: the loops stay vectorised. NaN fails the comparison too.
    if v >= EXP_FLUSH_BELOW { e } else { 0.0 }
}

/// [`exp_nonpositive`] is exactly 0 below this.
pub const EXP_FLUSH_BELOW: f32 = -64.0;

/// e^r's Taylor coefficients, highest degree first.
const TAYLOR: [f32; 7] = [
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// Lanes for the reductions below: independent partial results the compiler can keep in
/// one vector register (a single running sum would be a serial chain).
const LANES: usize = 8;

/// Σ f(x) over `xs`, in f32, summed in `LANES` interleaved partial sums.
#[inline]
pub fn sum_map(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for c in chunks {
        for k in 0..LANES {
            acc[k] += f(c[k]);
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// max over `xs` (−∞ for none; NaN entries are skipped, as by `f32::max`).
#[inline]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    for c in chunks {
        for k in 0..LANES {
            acc[k] = acc[k].max(c[k]);
        }
    }
    acc.iter().fold(rest, |m, &x| m.max(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_within_its_bound() {
        for i in 0..=240_000 {
            let x = -12.0 + i as f32 * 1e-4;
            let want = libm::erf(x as f64);
            let got = erf(x) as f64;
            assert!((got - want).abs() <= 5e-7, "erf({x}) = {got} vs {want}");
        }
    }

    #[test]
    fn exp_within_its_bound() {
        for i in 0..=400_000 {
            let v = -100.0 * i as f32 / 400_000.0;
            let (got, want) = (exp_nonpositive(v) as f64, (v as f64).exp());
            let ok = if v < EXP_FLUSH_BELOW {
                got == 0.0
            } else {
                (got - want).abs() <= 3e-7 * want
            };
            assert!(ok, "exp({v}) = {got} vs {want}");
        }
        assert_eq!(exp_nonpositive(f32::NAN), 0.0);
        assert_eq!(exp_nonpositive(-1e9), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(EXP_FLUSH_BELOW) >= 1.6e-28);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    /// Exact on small integers (every partial sum representable), so any lane mix-up shows.
    #[test]
    fn lane_reductions() {
        let xs: Vec<f32> = (0..37).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        for n in [0, 1, 7, 8, 9, 37] {
            let part = &xs[..n];
            let want: f64 = part.iter().map(|&x| (x as f64) * 2.0).sum();
            assert_eq!(sum_map(part, |x| 2.0 * x) as f64, want);
            let want_max = part.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(part), want_max);
        }
    }
}
