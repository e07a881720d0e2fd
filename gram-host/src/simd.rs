//! Running hot loops with the widest SIMD the CPU has: AVX-512, or AVX2 and FMA.
//!
//! Why: a Rust build for x86-64 targets SSE2 (4 lanes, no FMA) unless told otherwise. Building
//! with `target-cpu=native` would make binaries that fail on older CPUs; instead a hot loop runs
//! through [`vectorised_at`], which calls it from a function compiled for the level (LLVM
//! inlines the closure there, so its loops are vectorised for those features). No level changes
//! a result by itself: LLVM forms no fused multiply-add that the code does not ask for, so a
//! loop that asks for none gives the same bits at every level.
//!
//! Who decides the level: each caller names its default ([`level_or`]: the CPU backend's
//! per-pair step takes AVX-512, measured faster; gram-train's element-wise ops take AVX2), and
//! the user can override every default with `GRAM_SIMD=sse2|avx2|avx512` (read once) or
//! [`set_level`] — to compare levels on one machine, or to keep a CPU whose clock drops under
//! AVX-512 on AVX2. Never above what the CPU has.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level, lowest first.
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

    fn from_u8(v: u8) -> Option<Level> {
        match v {
            3 => Some(Level::Avx512),
            2 => Some(Level::Avx2),
            1 => Some(Level::Baseline),
            _ => None,
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

/// The user's choice: 0 = not read yet, [`NONE`] = none (each caller's default), else a level.
static CHOSEN: AtomicU8 = AtomicU8::new(0);
const NONE: u8 = u8::MAX;

/// The level chosen by [`set_level`], else by `GRAM_SIMD` if set and valid; `None` when the user
/// chose nothing.
pub fn chosen() -> Option<Level> {
    match CHOSEN.load(Ordering::Relaxed) {
        0 => {
            let want = std::env::var("GRAM_SIMD")
                .ok()
                .and_then(|s| Level::parse(&s));
            let v = want.map_or(NONE, |l| l as u8);
            CHOSEN.store(v, Ordering::Relaxed);
            Level::from_u8(v)
        }
        v => Level::from_u8(v),
    }
}

/// Overrides every caller's default with `want` (`None`: back to the defaults); returns the
/// level `want` runs at on this CPU.
pub fn set_level(want: Option<Level>) -> Option<Level> {
    CHOSEN.store(want.map_or(NONE, |l| l as u8), Ordering::Relaxed);
    want.map(|l| l.min(Level::detect()))
}

/// The user's choice, else `default`, capped at what the CPU has.
pub fn level_or(default: Level) -> Level {
    chosen().unwrap_or(default).min(Level::detect())
}

/// `f()`, compiled for `level` (else as built). `level` must not exceed [`Level::detect`]
/// (as [`level_or`] guarantees); a higher one runs as built.
#[inline(always)]
pub fn vectorised_at<R>(level: Level, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if level <= Level::detect() {
        match level {
            // SAFETY (both): the CPU has the level's features (checked just above).
            Level::Avx512 => return unsafe { with_avx512(f) },
            Level::Avx2 => return unsafe { with_avx2_fma(f) },
            Level::Baseline => {}
        }
    }
    let _ = level;
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
            assert_eq!(set_level(Some(want)), Some(want.min(top)));
            assert_eq!(level_or(Level::Baseline), want.min(top));
            // Each level computes the same sum (exactly: integers below 2^24).
            let s = vectorised_at(level_or(Level::Avx2), || {
                (0..1000).map(|i| i as f32).sum::<f32>()
            });
            assert_eq!(s, 499_500.0);
        }
        set_level(None);
        assert_eq!(level_or(Level::Avx2), Level::Avx2.min(top));
        assert_eq!(Level::parse("AVX512"), Some(Level::Avx512));
        assert_eq!(Level::parse("x"), None);
    }
}
