//! Single-precision kernels for targets whose FPU has no f64 (Cortex-M4F/M33/M55, RISC-V `imafc`):
//! there every f64 operation is a call into software floating point (≈ 100 instructions), so the
//! scoring path of [`crate::score_row`] forms its dot products in f32 instead, with error bounds
//! that [`crate::Candidate`] turns into a certified bound on the volume.
//!
//! Two dot products, both over f32 inputs:
//! - [`dot32`]: blocked summation (8 lanes × 4 terms, then an error-free sum of the blocks), the
//!   cost of a plain multi-accumulator loop plus ~14 operations per 32 elements, and an error
//!   bound [`dot32_rel_err`] that does not grow with n (≈ 8·2^-24).
//! - [`dot2_32`]: compensated ("Dot2", Ogita–Rump–Oishi 2005) with error-free products, as
//!   accurate as an f64 sum for n up to thousands ([`dot2_rel_err`] ≈ 2·(n/4·2^-24)²).
//!
//! Both bounds are relative to ‖a‖‖b‖ and hold for inputs whose largest magnitude
//! lies in [`IN_RANGE`] (no overflow; underflow is covered by an absolute term folded into the
//! bound). Results are bit-identical on every target: the error-free product uses the FPU's
//! fused multiply-add where there is one, else the exact f64 product; both give the same pair.

/// Which arithmetic [`crate::score_row_with`] forms dot products in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// f64 dot products (error ~n·2^-56 relative): fast where the FPU has f64.
    Double,
    /// f32 dot products with certified bounds, pairs refined in compensated f32 and then, where
    /// still needed, recomputed exactly: ≤ 1e-6 relative wherever the normalised volume is
    /// ≥ 1e-4. For f32 inputs only (f64 inputs always use `Double`).
    Single,
}

impl Arithmetic {
    /// `Single` on targets without f64 hardware (32-bit Arm microcontrollers, RISC-V without
    /// the `d` extension, Xtensa, AVR, MSP430), `Double` everywhere else. [`crate::score_row`]
    /// uses it; call [`crate::score_row_with`] to choose.
    pub const NATIVE: Arithmetic = if cfg!(gram_no_f64_hw) {
        Arithmetic::Single
    } else {
        Arithmetic::Double
    };
}

/// Unit roundoff of f32.
pub const U32: f32 = f32::EPSILON / 2.0;

/// The magnitudes the single-precision path takes: the anchor's largest element, and each
/// candidate vector's largest element or norm, in [2^-40, 2^40). Then no f32 product or sum
/// overflows and underflow costs at most n·2^-45 relative to ‖a‖‖b‖ (folded into the bounds);
/// outside it, the pair goes to the f64 path.
pub const IN_RANGE: core::ops::Range<f32> = 9.094_947e-13..1.099_511_6e12;

const LANES: usize = 8;
const PER_LANE: usize = 4;
const BLOCK: usize = LANES * PER_LANE;

/// `Σ aᵢbᵢ` in f32: each block of 32 elements summed in 8 lanes of 4 terms and pairwise across
/// lanes, the block sums accumulated error-free (TwoSum) with their errors summed beside them.
///
/// Error: `|result − exact| ≤ dot32_rel_err(n) · ‖a‖‖b‖` for inputs in [`IN_RANGE`] (and
/// `≤ dot32_rel_err(n) · Σ|aᵢbᵢ|` where nothing underflows).
/// Not fused: each term is `fl(acc + fl(a·b))`, which Cortex-M issues as one `vmla.f32`.
#[inline]
pub fn dot32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (ba, ra) = a.as_chunks::<BLOCK>();
    let (bb, rb) = b.as_chunks::<BLOCK>();
    let (mut s, mut c) = (0.0f32, 0.0f32);
    #[cfg(gram_arm_vfp4)]
    {
        let mut state = [s, c];
        crate::fpu::dot32_blocks(ba, bb, &mut state);
        [s, c] = state;
    }
    #[cfg(not(gram_arm_vfp4))]
    for (x, y) in ba.iter().zip(bb) {
        let (xs, _) = x.as_chunks::<LANES>();
        let (ys, _) = y.as_chunks::<LANES>();
        // The first products start the lanes (no addition to 0: without an FPU each is a call).
        let mut acc = mul8(&xs[0], &ys[0]);
        for (x8, y8) in xs[1..].iter().zip(&ys[1..]) {
            mla8(&mut acc, x8, y8);
        }
        let (t, e) = two_sum32(s, sum8(&acc));
        s = t;
        c += e;
    }
    let mut acc = [0.0f32; LANES];
    for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[i % LANES] += x * y;
    }
    let (t, e) = two_sum32(s, sum8(&acc));
    t + (c + e)
}

/// `acc[l] += x[l]·y[l]` for the 8 lanes, written out: with constant indices the lanes live in
/// registers at every optimisation level (a loop over `l` is not unrolled at opt-level "s", and
/// then the accumulators go through memory: measured 10 instructions per element, not 1.6).
#[cfg(not(gram_arm_vfp4))]
#[inline(always)]
fn mul8(x: &[f32; LANES], y: &[f32; LANES]) -> [f32; LANES] {
    let [x0, x1, x2, x3, x4, x5, x6, x7] = *x;
    let [y0, y1, y2, y3, y4, y5, y6, y7] = *y;
    [
        x0 * y0,
        x1 * y1,
        x2 * y2,
        x3 * y3,
        x4 * y4,
        x5 * y5,
        x6 * y6,
        x7 * y7,
    ]
}

#[cfg(not(gram_arm_vfp4))]
#[inline(always)]
fn mla8(acc: &mut [f32; LANES], x: &[f32; LANES], y: &[f32; LANES]) {
    let [x0, x1, x2, x3, x4, x5, x6, x7] = *x;
    let [y0, y1, y2, y3, y4, y5, y6, y7] = *y;
    acc[0] += x0 * y0;
    acc[1] += x1 * y1;
    acc[2] += x2 * y2;
    acc[3] += x3 * y3;
    acc[4] += x4 * y4;
    acc[5] += x5 * y5;
    acc[6] += x6 * y6;
    acc[7] += x7 * y7;
}

/// Bound of [`dot32`] relative to ‖a‖‖b‖ (≥ Σ|aᵢbᵢ|): γ₇ for a block (4 products and sums
/// per lane, 3 pairwise levels), one rounding for the final sum, the compensation's
/// second-order error (nb blocks: 2·nb²·u²), and underflow (at most 2n·2^-126 absolute, against
/// ‖a‖‖b‖ ≥ 2^-80, the smallest norms in [`IN_RANGE`]).
pub fn dot32_rel_err(n: usize) -> f32 {
    let u = U32 as f64;
    let nb = (n / BLOCK + 1) as f64;
    let gamma7 = 7.0 * u / (1.0 - 7.0 * u);
    let bound = gamma7 + u + 2.0 * nb * nb * u * u + 2.0 * n as f64 * TWO_POW_M46;
    // Rounded up into f32 with room to spare.
    (bound * (1.0 + 1e-3)) as f32
}

/// 2^-46 and 2^-53, written out (computed per call, `scalbn` costs soft-float calls).
const TWO_POW_M46: f64 = 1.0 / (1u64 << 46) as f64;
const TWO_POW_M53: f64 = 1.0 / (1u64 << 53) as f64;

/// `Σ aᵢbᵢ` compensated in f32 and returned in f64: four lanes (the tail in lane 0), each keeping the rounding
/// errors of its products (exact, by [`two_prod32`]) and of its sums (TwoSum) in a second f32
/// accumulator; the lanes are then combined error-free and returned as one f64 sum.
///
/// Error: `|result − exact| ≤ dot2_rel_err(n) · ‖a‖‖b‖` for inputs in [`IN_RANGE`] (and
/// `≤ dot2_rel_err(n) · Σ|aᵢbᵢ|` where nothing underflows).
#[inline]
pub fn dot2_32(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let (mut s, mut c) = ([0.0f32; 4], [0.0f32; 4]);
    let (ca, ra) = a.as_chunks::<4>();
    let (cb, rb) = b.as_chunks::<4>();
    #[cfg(gram_arm_vfp4)]
    {
        let mut state = [0.0f32; 8];
        crate::fpu::dot2_blocks(ca, cb, &mut state);
        s.copy_from_slice(&state[..4]);
        c.copy_from_slice(&state[4..]);
    }
    #[cfg(not(gram_arm_vfp4))]
    for (x, y) in ca.iter().zip(cb) {
        // Lanes written out (constant indices keep them in registers, see `mla8`).
        dot2_step(&mut s[0], &mut c[0], x[0], y[0]);
        dot2_step(&mut s[1], &mut c[1], x[1], y[1]);
        dot2_step(&mut s[2], &mut c[2], x[2], y[2]);
        dot2_step(&mut s[3], &mut c[3], x[3], y[3]);
    }
    for (x, y) in ra.iter().zip(rb) {
        dot2_step(&mut s[0], &mut c[0], *x, *y);
    }
    // Lanes combined error-free (TwoSum) in f32, their errors and the compensations summed
    // beside (second-order: ~6·2^-24·|c|), then one f64 addition: cheap without f64 hardware.
    let (s01, e01) = two_sum32(s[0], s[1]);
    let (s23, e23) = two_sum32(s[2], s[3]);
    let (hi, e) = two_sum32(s01, s23);
    let lo = ((c[0] + c[1]) + (c[2] + c[3])) + ((e01 + e23) + e);
    hi as f64 + lo as f64
}

/// One term of a compensated lane: `s + c ← s + c + x·y` with the product's and the sum's
/// rounding errors moved into `c`.
#[inline(always)]
fn dot2_step(s: &mut f32, c: &mut f32, x: f32, y: f32) {
    let (p, pe) = two_prod32(x, y);
    let (t, e) = two_sum32(*s, p);
    *s = t;
    *c += e + pe;
}

/// Bound of [`dot2_32`] relative to ‖a‖‖b‖ (≥ Σ|aᵢbᵢ|): twice γ_t² for lanes of t = ⌈n/4⌉ terms (the
/// compensation's own rounding, Ogita–Rump–Oishi Prop. 4.5 with error-free products; the
/// lanes' combination adds less than γ_t² again for t ≥ 3), the final f64 addition (covered
/// by 8·2^-53) and underflow as in [`dot32_rel_err`].
pub fn dot2_rel_err(n: usize) -> f64 {
    // γ_t = t·u/(1 − t·u) ≤ 1.001·t·u while t·u ≤ 2^-10 (n ≤ 2^16); beyond, the exact form.
    let tu = (n / 4 + 2) as f64 * U32 as f64;
    let gamma = if tu <= 1.0 / 1024.0 {
        tu * 1.001
    } else {
        tu / (1.0 - tu)
    };
    (2.0 * gamma * gamma + 8.0 * TWO_POW_M53 + 4.0 * n as f64 * TWO_POW_M46) * (1.0 + 1e-3)
}

/// `s + e = a + b` exactly (Knuth's TwoSum, six operations, any order of magnitudes).
#[inline(always)]
pub fn two_sum32(a: f32, b: f32) -> (f32, f32) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// `p + e = a·b` exactly (barring underflow): `p = fl(a·b)` and its rounding error, by the
/// fused multiply-add `e = fma(a, b, −p)` where the FPU has one, else from the exact f64
/// product (24 + 24 bits fit in 53); the two give the same pair.
#[inline(always)]
pub fn two_prod32(a: f32, b: f32) -> (f32, f32) {
    let p = a * b;
    (p, fma_or_exact(a, b, -p))
}

#[inline(always)]
fn fma_or_exact(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(any(gram_arm_vfp4, gram_riscv_f))]
    {
        crate::fpu::fma32(a, b, c)
    }
    #[cfg(not(any(gram_arm_vfp4, gram_riscv_f)))]
    {
        // a·b is exact in f64; adding c rounds once in f64 and once to f32, which is exact
        // here because the true result (the product's rounding error) is representable in f32.
        (a as f64 * b as f64 + c as f64) as f32
    }
}

/// √x in f32, correctly rounded: the FPU's square root where there is one (`libm::sqrtf` is
/// software on these targets), else `libm::sqrtf` (same bits).
#[inline(always)]
pub fn sqrt32(x: f32) -> f32 {
    #[cfg(any(gram_arm_vfp4, gram_riscv_f))]
    {
        crate::fpu::sqrt32(x)
    }
    #[cfg(not(any(gram_arm_vfp4, gram_riscv_f)))]
    {
        libm::sqrtf(x)
    }
}

#[inline(always)]
fn sum8(acc: &[f32; LANES]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Largest |vᵢ| in f32, or `Err(NonFinite)` if any element is NaN or infinite.
#[inline]
pub fn max_abs32(v: &[f32]) -> Result<f32, crate::GramError> {
    let mut m = 0.0f32;
    for &x in v {
        let a = x.abs();
        // `!(a <= m)` is also true for NaN, so one comparison checks both.
        if !(a <= m) {
            if !a.is_finite() {
                return Err(crate::GramError::NonFinite);
            }
            m = a;
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(a: &[f32], b: &[f32]) -> (f64, f64) {
        // f32 products are exact in f64; n ≤ 4096 terms of 48 bits sum with error ≪ the bounds.
        let mut s = 0.0f64;
        let mut abs = 0.0f64;
        for (x, y) in a.iter().zip(b) {
            s += *x as f64 * *y as f64;
            abs += (*x as f64 * *y as f64).abs();
        }
        (s, abs)
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn dots_stay_within_their_bounds() {
        let mut seed = 7;
        for n in [1usize, 3, 31, 32, 33, 128, 500, 512, 1031, 4096] {
            for trial in 0..20 {
                // Mixed magnitudes and heavy cancellation (b ≈ a on a shuffled half).
                let a: Vec<f32> = (0..n)
                    .map(|i| lcg(&mut seed) * (1 + i % 7) as f32)
                    .collect();
                let b: Vec<f32> = (0..n)
                    .map(|i| {
                        if trial % 2 == 0 {
                            lcg(&mut seed)
                        } else {
                            a[(i * 7) % n] - a[i]
                        }
                    })
                    .collect();
                let (e, abs) = exact(&a, &b);
                let d1 = dot32(&a, &b) as f64;
                let d2 = dot2_32(&a, &b);
                assert!(
                    (d1 - e).abs() <= dot32_rel_err(n) as f64 * abs,
                    "dot32 n={n}"
                );
                assert!((d2 - e).abs() <= dot2_rel_err(n) * abs, "dot2 n={n}");
            }
        }
    }

    #[test]
    fn two_prod_is_exact() {
        let mut seed = 3;
        for _ in 0..1000 {
            let (a, b) = (lcg(&mut seed) * 1e3, lcg(&mut seed) * 1e-3);
            let (p, e) = two_prod32(a, b);
            assert_eq!(p as f64 + e as f64, a as f64 * b as f64);
        }
    }

    #[test]
    fn bounds_are_small_and_max_abs_refuses_non_finite() {
        assert!(dot32_rel_err(512) < 5e-7);
        assert!(dot2_rel_err(512) < 2e-10);
        assert_eq!(max_abs32(&[1.0, -3.0, 2.0]), Ok(3.0));
        assert!(max_abs32(&[1.0, f32::NAN]).is_err());
        assert!(max_abs32(&[f32::NEG_INFINITY]).is_err());
    }
}
