//! The fused CPU ops' loops (GELU, LayerNorm, softmax, attention, AdamW) at the widest SIMD
//! chosen for them: `gram_host::simd`'s mechanism (one function compiled per level, chosen once
//! from the CPU and `GRAM_SIMD`), with AVX2 as these ops' default. Results may differ from the
//! SSE2 path in the last bits where a loop asks for fused multiply-adds; every op's tests bound
//! their error either way.
//!
//! Why AVX2 and not AVX-512 by default: these loops stream memory, and on an AVX-512 Xeon the
//! wider level measured no faster (forward + backward of GELU over 8192 × 1536, LayerNorm over
//! 8192 × 384, softmax over 6144 × 128: within ±7 % of AVX2 either way, `cpu_kernels`), while
//! some CPUs lower their clock for 512-bit instructions. The GEMMs, which are compute-bound,
//! do use AVX-512 where the CPU has it (the `gemm` crate's own dispatch).

pub use gram_host::simd::Level;

/// The level the fused ops run at: the user's choice (`GRAM_SIMD`, [`set_level`]), else AVX2,
/// never above what the CPU has.
pub fn level() -> Level {
    gram_host::simd::level_or(Level::Avx2)
}

/// Runs every SIMD loop (these ops' and gram-host's) at `want`, or at the CPU's highest level if
/// that is lower; returns the level in effect.
pub fn set_level(want: Level) -> Level {
    gram_host::simd::set_level(Some(want));
    level()
}

/// `f()`, compiled for [`level`].
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    gram_host::simd::vectorised_at(level(), f)
}
