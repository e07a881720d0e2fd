//! Running the fused CPU ops' loops with AVX2 and FMA where the CPU has them.
//!
//! Why: a Rust build for x86-64 targets SSE2 (4 lanes, no FMA) unless told otherwise, so the
//! element-wise loops of GELU, LayerNorm, softmax, attention and AdamW ran at half a modern
//! core's width. Building the whole crate with `target-cpu=native` would make binaries that
//! fail on older CPUs; instead each hot loop body runs through [`vectorised`], which checks the
//! CPU once and calls it from a function compiled with `avx2,fma` (LLVM inlines the closure
//! there, so its loops are vectorised for those features). Results may differ from the SSE2
//! path in the last bits (FMA rounds once); every op's tests bound its error either way.

use std::sync::OnceLock;

/// Whether this CPU has AVX2 and FMA (checked once).
fn avx2_fma() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `f()`, compiled for AVX2 + FMA when the CPU has them (else as built).
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU supports avx2 and fma (checked above).
        return unsafe { with_avx2_fma(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}
