//! Running the fused CPU ops' loops with the widest SIMD the CPU has: AVX-512, or AVX2 and FMA.
//!
//! Why: a Rust build for x86-64 targets SSE2 (4 lanes, no FMA) unless told otherwise, so the
//! element-wise loops of GELU, LayerNorm, softmax, attention and AdamW ran at a quarter of a
//! modern core's width. Building the whole crate with `target-cpu=native` would make binaries
//! that fail on older CPUs; instead each hot loop body runs through `vectorised`, which
//! reads the level chosen once from the CPU ([`Level::detect`]) and calls the body from a
//! function compiled for it (LLVM inlines the closure there, so its loops are vectorised for
//! those features). Results may differ from the SSE2 path in the last bits (FMA rounds once);
//! every op's tests bound their error either way.
//!
//! The level can be chosen ([`set_level`], or `GRAM_SIMD=sse2|avx2|avx512` before the first
//! op), never above what the CPU has: to compare levels on one machine, or to keep a CPU whose
//! clock drops under AVX-512 on AVX2.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level for the fused ops' loops, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// What the crate is built for (SSE2 on x86-64; NEON on aarch64).
    Baseline = 1,
    /// AVX2 + FMA (x86-64-v3).
    Avx2 = 2,
    /// AVX-512 F/BW/DQ/VL + AVX2 + FMA (x86-64-v4).
    Avx512 = 3,
}

impl Level {
    /// The highest level this CPU supports.
    pub fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let v3 = has!("avx2") && has!("fma");
            if v3 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                return Level::Avx512;
            }
            if v3 {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }

    fn from_u8(v: u8) -> Level {
        match v {
            3 => Level::Avx512,
            2 => Level::Avx2,
            _ => Level::Baseline,
        }
    }

    /// Parses `sse2`/`baseline`, `avx2`, `avx512` (as `GRAM_SIMD` takes them).
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "sse2" | "baseline" | "none" => Some(Level::Baseline),
            "avx2" => Some(Level::Avx2),
            "avx512" => Some(Level::Avx512),
            _ => None,
        }
    }
}

/// 0 = not chosen yet.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level the fused ops run at: the one [`set_level`] chose, else `GRAM_SIMD` if set and
/// valid, else AVX2 — never above what the CPU has.
///
/// Why AVX2 and not AVX-512 by default: these loops stream memory, and on an AVX-512 Xeon the
/// wider level measured no faster (forward + backward of GELU over 8192 × 1536, LayerNorm over
/// 8192 × 384, softmax over 6144 × 128: within ±7 % of AVX2 either way, `cpu_kernels`), while
/// some CPUs lower their clock for 512-bit instructions. The GEMMs, which are compute-bound,
/// do use AVX-512 where the CPU has it (the `gemm` crate's own dispatch).
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let want = std::env::var("GRAM_SIMD")
                .ok()
                .and_then(|s| Level::parse(&s))
                .unwrap_or(Level::Avx2);
            set_level(want)
        }
        v => Level::from_u8(v),
    }
}

/// Runs the fused ops at `want`, or at the CPU's highest level if that is lower; returns the
/// level in effect.
pub fn set_level(want: Level) -> Level {
    let l = want.min(Level::detect());
    LEVEL.store(l as u8, Ordering::Relaxed);
    l
}

/// `f()`, compiled for the chosen level (else as built).
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY (both): `level` never exceeds what `Level::detect` found on this CPU.
        Level::Avx512 => return unsafe { with_avx512(f) },
        Level::Avx2 => return unsafe { with_avx2_fma(f) },
        Level::Baseline => {}
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_above_the_cpu() {
        let top = Level::detect();
        for want in [Level::Baseline, Level::Avx2, Level::Avx512] {
            assert_eq!(set_level(want), want.min(top));
            assert_eq!(level(), want.min(top));
            // Each level computes the same sum (exactly: integers below 2^24).
            let s = vectorised(|| (0..1000).map(|i| i as f32).sum::<f32>());
            assert_eq!(s, 499_500.0);
        }
        set_level(top);
        assert_eq!(Level::parse("AVX512"), Some(Level::Avx512));
        assert_eq!(Level::parse("x"), None);
    }
}
