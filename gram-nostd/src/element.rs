//! Input element types: `f32` and `f64`.

/// A floating-point input element. Everything is computed in `f64` (or double-double).
pub trait Element: Copy + Send + Sync + 'static {
    /// True when the product of two values of this type, widened to `f64`, is exact
    /// (24 + 24 mantissa bits fit in 53). Lets the exact path skip `two_prod`.
    const EXACT_F64_PRODUCT: bool;
    fn to_f64(self) -> f64;
    /// The slice itself when the elements are f32 (the single-precision path takes only
    /// those), else `None`.
    fn as_f32_slice(v: &[Self]) -> Option<&[f32]>;
}

impl Element for f32 {
    const EXACT_F64_PRODUCT: bool = true;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn as_f32_slice(v: &[f32]) -> Option<&[f32]> {
        Some(v)
    }
}

impl Element for f64 {
    const EXACT_F64_PRODUCT: bool = false;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn as_f32_slice(_: &[f64]) -> Option<&[f32]> {
        None
    }
}

/// Power-of-two scale `2^-e` that brings `max_abs` into [1, 2): multiplying by it is exact for
/// normal numbers and keeps every product and sum of a dot product away from overflow and
/// underflow. Returns `(scale, e)`; for `max_abs == 0` returns `(1, 0)`.
#[inline]
pub fn pow2_scale(max_abs: f64) -> (f64, i32) {
    if max_abs == 0.0 {
        return (1.0, 0);
    }
    let (_, e) = libm::frexp(max_abs); // max_abs = m·2^e, m ∈ [0.5, 1)
    // max_abs ∈ [2^(e-1), 2^e). The clamp keeps 2^-e finite for f64 subnormals; the scaled
    // maximum is then ≥ 2^-74, still far from underflow when squared.
    let e = (e - 1).clamp(-1000, 1023);
    (libm::scalbn(1.0, -e), e)
}

/// Largest absolute value of `v`, or `Err(NonFinite)` if any element is NaN or infinite.
#[inline]
pub fn max_abs_checked<T: Element>(v: &[T]) -> Result<f64, crate::GramError> {
    let mut m = 0.0f64;
    for &x in v {
        let a = libm::fabs(x.to_f64());
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
