//! Dot products in f64 and in double-double, over equilibrated (power-of-two scaled) vectors.

use crate::dd::{Dd, two_prod, two_sum};
use crate::element::Element;

/// Independent accumulators: breaks the add dependency chain so LLVM can vectorise, and
/// shortens each summation chain (which only tightens the error bound).
const LANES: usize = 8;

/// `Σ (sa·a_i)(sb·b_i)` accumulated in f64, where `sa`, `sb` are powers of two.
///
/// Error: `|result − exact| ≤ (n/8 + 4)·2^-53 · Σ|sa·a_i·sb·b_i|` (recursive summation of 8
/// lanes, then a pairwise sum of the lanes). For f32 inputs each product is exact in f64 and
/// cannot overflow or underflow, so the scales are applied once at the end.
#[inline]
pub fn dot_f64<T: Element>(a: &[T], sa: f64, b: &[T], sb: f64) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f64; LANES];
    let (ca, ra) = a.as_chunks::<LANES>();
    let (cb, rb) = b.as_chunks::<LANES>();
    if T::EXACT_F64_PRODUCT {
        for (x, y) in ca.iter().zip(cb) {
            for l in 0..LANES {
                acc[l] += x[l].to_f64() * y[l].to_f64();
            }
        }
        for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
            acc[l] += x.to_f64() * y.to_f64();
        }
        sum_lanes(&acc) * (sa * sb)
    } else {
        for (x, y) in ca.iter().zip(cb) {
            for l in 0..LANES {
                acc[l] += (x[l].to_f64() * sa) * (y[l].to_f64() * sb);
            }
        }
        for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
            acc[l] += (x.to_f64() * sa) * (y.to_f64() * sb);
        }
        sum_lanes(&acc)
    }
}

#[inline(always)]
fn sum_lanes(acc: &[f64; LANES]) -> f64 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// `Σ (sa·a_i)(sb·b_i)` in double-double: Ogita–Rump–Oishi "Dot2" with the compensation kept
/// as the low word. Error: `|result − exact| ≤ 2^-104·|exact| + γ_n²·Σ|p_i|` with
/// `γ_n = n·2^-53/(1 − n·2^-53)`, i.e. about 1e-27 relative to `‖a‖‖b‖` for n = 512: the
/// Gram matrix is as if formed in 106-bit arithmetic, which pays for the squared condition
/// number of the Gram determinant.
///
/// `sa·|a_i|` and `sb·|b_i|` must stay below 2^995 (guaranteed by [`crate::element::pow2_scale`]).
#[inline]
pub fn dot_dd<T: Element>(a: &[T], sa: f64, b: &[T], sb: f64) -> Dd {
    debug_assert_eq!(a.len(), b.len());
    const L: usize = 4;
    let mut s = [0.0f64; L];
    let mut c = [0.0f64; L];
    let (ca, ra) = a.as_chunks::<L>();
    let (cb, rb) = b.as_chunks::<L>();
    if T::EXACT_F64_PRODUCT {
        // Products of f32 values are exact in f64 and never overflow: scale at the end.
        for (x, y) in ca.iter().zip(cb) {
            let p: [f64; L] = core::array::from_fn(|l| x[l].to_f64() * y[l].to_f64());
            let t: [f64; L] = core::array::from_fn(|l| s[l] + p[l]);
            let bb: [f64; L] = core::array::from_fn(|l| t[l] - s[l]);
            for l in 0..L {
                c[l] += (s[l] - (t[l] - bb[l])) + (p[l] - bb[l]);
            }
            s = t;
        }
        for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
            let (t, e) = two_sum(s[l], x.to_f64() * y.to_f64());
            s[l] = t;
            c[l] += e;
        }
    } else {
        let mut step = |l: usize, x: f64, y: f64| {
            let (p, pe) = two_prod(x * sa, y * sb);
            let (t, e) = two_sum(s[l], p);
            s[l] = t;
            c[l] += e + pe;
        };
        for (x, y) in ca.iter().zip(cb) {
            for l in 0..L {
                step(l, x[l].to_f64(), y[l].to_f64());
            }
        }
        for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
            step(l, x.to_f64(), y.to_f64());
        }
    }
    let mut total = Dd::ZERO;
    for l in 0..L {
        total = total + Dd::from_sum(s[l], c[l]);
    }
    if T::EXACT_F64_PRODUCT {
        let f = sa * sb; // a power of two: exact
        Dd {
            hi: total.hi * f,
            lo: total.lo * f,
        }
    } else {
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dd_dot_sees_what_f64_rounds_away() {
        // 1 + 2^-60 − 1 = 2^-60: a plain f64 sum returns 0.
        let tiny = libm::scalbn(1.0, -60);
        let a = [1.0f64, tiny, -1.0];
        let b = [1.0f64, 1.0, 1.0];
        assert_eq!(dot_f64(&a, 1.0, &b, 1.0), 0.0);
        assert_eq!(dot_dd(&a, 1.0, &b, 1.0).to_f64(), tiny);
    }

    #[test]
    fn f32_dot_applies_scales_exactly() {
        let a: [f32; 11] = core::array::from_fn(|i| i as f32 * 0.37 - 1.0);
        let b: [f32; 11] = core::array::from_fn(|i| 0.5 - i as f32 * 0.11);
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let d = dot_dd(&a, 0.25, &b, 8.0).to_f64();
        assert!((d - 2.0 * exact).abs() <= 1e-15 * exact.abs().max(1.0));
        let f = dot_f64(&a, 0.25, &b, 8.0);
        assert!((f - 2.0 * exact).abs() <= 1e-14);
    }
}
