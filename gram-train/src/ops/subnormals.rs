//! A probe that counts subnormal f32 values in the operands and results of the CPU GEMMs
//! (`super::gemm_cpu`: every Linear layer forward and backward, every attention product), per
//! call site. Off by default (one relaxed atomic load per GEMM); [`enable`] turns it on for
//! tests and for `pretrain_step --count-subnormals`.
//!
//! Why count values and not time: a subnormal operand costs an Intel core a microcode assist
//! per multiply and an AMD core almost nothing, so a timing test would pass on one server and
//! fail on the other. The values are the same on both, so a test on them fails on any x86
//! machine (or any other) when subnormals reach the GEMMs again. Values are read by their
//! bits, so the count is right also on a thread that reads subnormals as zero (DAZ).
//!
//! Where they came from — this probe on the pretraining step (MiniLM + small ViT + AST, B = 64,
//! 5 steps, `pretrain_step --keep-subnormals --count-subnormals`), 2026-12-02, with
//! [`super::fastmath::exp_nonpositive`] still returning e^−87 ≈ 1.65e-38 below −87:
//!
//! | GEMM | subnormal operands | subnormal results |
//! |---|---|---|
//! | attention ∂v += Pᵀ·∂o, ∂P = ∂o·vᵀ | 741,254 | 573,890 |
//! | attention ∂q += ∂s·k, ∂k += ∂sᵀ·q | 393,646 | 546,879 |
//! | Linear ∂x = ∂y·W, ∂W = ∂yᵀ·x | 5,063,346 | 3,153,024 |
//! | attention forward, Linear forward | 0 | 0 |
//!
//! A padded key's score is −10⁹, so its probability came out as e^−87/l, subnormal once
//! divided by the row sum l; through ∂s = P∘(∂P − δ) the padded keys got subnormal gradients,
//! and the key projections' backward carried them into every Linear layer below (the \[PAD\]
//! token's embedding gradient was subnormal in all 384 entries). With the exponential exactly 0
//! below −64 the same run shows no subnormal operand at all; 49 subnormal results remain in
//! the first step (∂W of a projection head: a tiny gradient times a tiny activation), which
//! flush-to-zero ([`crate::fp_mode`]) removes. On an Intel Xeon (AVX-512) the step went from
//! 28 to 71 samples/s with the source fixed, flush-to-zero off.

use std::collections::BTreeMap;
use std::panic::Location;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);
static COUNTS: Mutex<BTreeMap<String, SiteCounts>> = Mutex::new(BTreeMap::new());

/// Subnormal values seen at one GEMM call site since the last [`take`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteCounts {
    /// GEMM calls made from the site, and their floating-point operations (2·m·n·k).
    pub calls: u64,
    pub flops: u64,
    /// Subnormal elements of the left operand, the right operand and the result.
    pub lhs: u64,
    pub rhs: u64,
    pub out: u64,
}

impl SiteCounts {
    /// Subnormals in either operand or the result.
    pub fn total(&self) -> u64 {
        self.lhs + self.rhs + self.out
    }
}

/// Turns the probe on or off for the whole process.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The counts per call site ("file:line") since the last call, and resets them.
pub fn take() -> BTreeMap<String, SiteCounts> {
    std::mem::take(&mut *COUNTS.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Whether `x` is subnormal, by its bits (exponent field 0, mantissa non-zero).
#[inline]
pub fn is_subnormal(x: f32) -> bool {
    let bits = x.to_bits() & 0x7fff_ffff;
    bits != 0 && bits < 0x0080_0000
}

/// Whether the probe is on.
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Subnormals among the `rows × cols` elements at `data[i·rs + j·cs]`.
///
/// # Safety
/// Every addressed element must be readable.
pub(crate) unsafe fn count(
    data: *const f32,
    (rows, cols): (usize, usize),
    rs: usize,
    cs: usize,
) -> u64 {
    let mut n = 0;
    for i in 0..rows {
        for j in 0..cols {
            // SAFETY: the caller's contract.
            n += is_subnormal(unsafe { *data.add(i * rs + j * cs) }) as u64;
        }
    }
    n
}

/// Adds one GEMM call's counts to `site`.
pub(crate) fn record(site: &Location<'_>, flops: u64, lhs: u64, rhs: u64, out: u64) {
    let key = format!("{}:{}", site.file(), site.line());
    let mut all = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let c = all.entry(key).or_default();
    c.calls += 1;
    c.flops += flops;
    c.lhs += lhs;
    c.rhs += rhs;
    c.out += out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormal_by_bits() {
        for (x, sub) in [
            (0.0f32, false),
            (-0.0, false),
            (f32::MIN_POSITIVE, false),
            (f32::MIN_POSITIVE / 2.0, true),
            (-f32::from_bits(1), true),
            (1.0, false),
            (f32::INFINITY, false),
            (f32::NAN, false),
        ] {
            assert_eq!(is_subnormal(x), sub, "{x:e}");
        }
    }
}
