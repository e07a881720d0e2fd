//! Double-double arithmetic: a value is `hi + lo` with `|lo| ≤ ulp(hi)/2`, about 106 bits.
//!
//! Error-free transformations after Dekker (1971) and Knuth; no FMA is assumed (the Cortex-M4
//! has none for f64 and `libm::fma` is slow), so products use Dekker's split. Inputs must stay
//! below 2^995 in magnitude for the split not to overflow; callers equilibrate by powers of two.

use core::ops::{Add, Div, Mul, Neg, Sub};

/// `s + e = a + b` exactly.
#[inline(always)]
pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// `s + e = a + b` exactly, provided `|a| ≥ |b|` (or a == 0).
#[inline(always)]
fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

#[inline(always)]
fn split(a: f64) -> (f64, f64) {
    const SPLITTER: f64 = 134_217_729.0; // 2^27 + 1
    let c = SPLITTER * a;
    let hi = c - (c - a);
    (hi, a - hi)
}

/// `p + e = a·b` exactly (barring underflow).
#[inline(always)]
pub fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    (p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)
}

/// A double-double number `hi + lo`.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

impl Dd {
    pub const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };
    pub const ONE: Dd = Dd { hi: 1.0, lo: 0.0 };

    #[inline(always)]
    pub fn from_f64(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }

    /// Renormalise an unnormalised pair.
    #[inline(always)]
    pub fn from_sum(hi: f64, lo: f64) -> Dd {
        let (s, e) = two_sum(hi, lo);
        Dd { hi: s, lo: e }
    }

    #[inline(always)]
    pub fn to_f64(self) -> f64 {
        self.hi + self.lo
    }
}

/// Relative error ≤ 2·2^-106 (accurate addition, Shewchuk/QD "ieee add").
impl Add for Dd {
    type Output = Dd;
    #[inline(always)]
    fn add(self, y: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, y.hi);
        let (t, f) = two_sum(self.lo, y.lo);
        let (s, e) = fast_two_sum(s, e + t);
        let (s, e) = fast_two_sum(s, e + f);
        Dd { hi: s, lo: e }
    }
}

impl Neg for Dd {
    type Output = Dd;
    #[inline(always)]
    fn neg(self) -> Dd {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }
}

impl Sub for Dd {
    type Output = Dd;
    #[inline(always)]
    fn sub(self, y: Dd) -> Dd {
        self + (-y)
    }
}

/// Relative error ≤ 4·2^-106.
impl Mul for Dd {
    type Output = Dd;
    #[inline(always)]
    fn mul(self, y: Dd) -> Dd {
        let (p, e) = two_prod(self.hi, y.hi);
        let e = e + (self.hi * y.lo + self.lo * y.hi);
        let (p, e) = fast_two_sum(p, e);
        Dd { hi: p, lo: e }
    }
}

/// Long division with three quotient digits; relative error a few 2^-106. `y` must be nonzero.
impl Div for Dd {
    type Output = Dd;
    #[inline]
    fn div(self, y: Dd) -> Dd {
        let q1 = self.hi / y.hi;
        let r = self - y * Dd::from_f64(q1);
        let q2 = r.hi / y.hi;
        let r = r - y * Dd::from_f64(q2);
        let q3 = r.hi / y.hi;
        let (q1, q2) = fast_two_sum(q1, q2);
        Dd { hi: q1, lo: q2 } + Dd::from_f64(q3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_prod_is_exact_on_a_known_case() {
        // (1 + 2^-30)^2 = 1 + 2^-29 + 2^-60: the last term is lost by a plain f64 product.
        let a = 1.0 + libm::scalbn(1.0, -30);
        let (p, e) = two_prod(a, a);
        assert_eq!(p, 1.0 + libm::scalbn(1.0, -29));
        assert_eq!(e, libm::scalbn(1.0, -60));
    }

    #[test]
    fn division_recovers_one_third_to_double_double() {
        let third = Dd::ONE / Dd::from_f64(3.0);
        let back = third * Dd::from_f64(3.0) - Dd::ONE;
        assert!(libm::fabs(back.to_f64()) < 1e-31, "{back:?}");
        // And the low word carries information a plain f64 does not.
        assert!(third.lo != 0.0);
    }

    #[test]
    fn cancellation_keeps_the_low_word() {
        let x = Dd::from_sum(1.0, 1e-20);
        let d = x - Dd::ONE;
        assert!((d.to_f64() - 1e-20).abs() < 1e-35);
    }
}
