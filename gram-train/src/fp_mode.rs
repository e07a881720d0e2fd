//! The floating-point mode of the calling thread: whether subnormal results are flushed to
//! zero and subnormal inputs read as zero (x86-64: MXCSR's FTZ and DAZ bits; aarch64: FPCR.FZ).
//!
//! Why training runs with them set ([`crate::process::configure`]): the backward pass of a
//! transformer produces subnormal floats (see [`crate::ops::subnormals`] for where they came
//! from and which are avoided at the source), and an Intel core takes a microcode assist of
//! ~100 cycles for every multiply with a subnormal operand or result. On the pretraining step
//! (MiniLM + small ViT + AST, B = 64) three quarters of the time went to the GEMM microkernels
//! stalling on them; AMD cores barely slow down, so the same binary was 3× slower on one
//! server than on another. TensorFlow runs its CPU kernels this way by default; PyTorch offers
//! `torch.set_flush_denormal`. Values below 2^-126 ≈ 1.2e-38 (f32) or 2^-1022 (f64) become 0:
//! nothing a training step computes is meaningful at that size, and f32 gradients that small
//! are already below the resolution of any parameter update.
//!
//! What this never touches: gram-nostd and gram-host (the scoring library keeps the caller's
//! mode and its accuracy contracts are tested in the default mode), and any thread the
//! training code does not own. The mode is per thread: [`set`] on a thread we spawn hands the
//! caller's mode on ([`current`] then [`set`]).

/// A thread's floating-point control state (rounding, masks, flush bits; not the status
/// flags), as read by [`current`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpMode(u64);

/// MXCSR: flush-to-zero (bit 15) and denormals-are-zero (bit 6).
#[cfg(target_arch = "x86_64")]
const FLUSH_BITS: u64 = (1 << 15) | (1 << 6);
/// FPCR.FZ (bit 24): flush subnormal inputs and results to zero.
#[cfg(target_arch = "aarch64")]
const FLUSH_BITS: u64 = 1 << 24;

/// The calling thread's mode (all zeros on targets without one we read).
pub fn current() -> FpMode {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR to a valid, writable u32.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags))
        };
        // Bits 0–5 are sticky exception flags (status, not mode): left out.
        FpMode((csr & !0x3f) as u64)
    }
    #[cfg(target_arch = "aarch64")]
    {
        let fpcr: u64;
        // SAFETY: reading FPCR has no side effects.
        unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack)) };
        FpMode(fpcr)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        FpMode(0)
    }
}

/// Makes `mode` the calling thread's mode (a no-op on targets without one we set).
pub fn set(mode: FpMode) {
    #[cfg(target_arch = "x86_64")]
    {
        let csr = mode.0 as u32;
        // SAFETY: ldmxcsr loads a value read by stmxcsr with only the FTZ/DAZ bits changed,
        // both of which every x86-64 CPU with SSE2 defines (DAZ since the Pentium 4).
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly)) };
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: writing FPCR with only FZ changed from a value read from it.
    unsafe {
        std::arch::asm!("msr fpcr, {}", in(reg) mode.0, options(nomem, nostack))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = mode;
}

/// Sets flush-to-zero and denormals-are-zero on the calling thread (both f32 and f64
/// arithmetic, scalar and SIMD). On targets other than x86-64 and aarch64 nothing changes.
pub fn flush_subnormals() {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    set(FpMode(current().0 | FLUSH_BITS));
}

/// Whether the calling thread flushes subnormals (always false where [`flush_subnormals`]
/// does nothing).
pub fn flushes_subnormals() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        current().0 & FLUSH_BITS == FLUSH_BITS
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Runs `f` on the calling thread with `mode`, restoring the thread's own mode afterwards
/// (also when `f` panics).
pub fn with<R>(mode: FpMode, f: impl FnOnce() -> R) -> R {
    struct Restore(FpMode);
    impl Drop for Restore {
        fn drop(&mut self) {
            set(self.0);
        }
    }
    let _restore = Restore(current());
    set(mode);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest positive f32 subnormal, produced by arithmetic the optimiser cannot fold
    /// (the operands come through `black_box`).
    fn tiny_product() -> f32 {
        std::hint::black_box(1e-30f32) * std::hint::black_box(1e-15f32)
    }

    #[test]
    fn flushing_is_per_thread_and_restored() {
        let own = current();
        assert!(tiny_product() > 0.0, "default mode keeps subnormals");
        let flushing = std::thread::spawn(|| {
            flush_subnormals();
            (flushes_subnormals(), tiny_product())
        })
        .join()
        .unwrap();
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert_eq!(flushing, (true, 0.0));
        }
        // The spawning thread's mode is untouched, and `with` restores after a panic.
        assert_eq!(current(), own);
        let on = std::thread::spawn(|| {
            flush_subnormals();
            current()
        })
        .join()
        .unwrap();
        let caught = std::panic::catch_unwind(|| with(on, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(current(), own);
        assert!(tiny_product() > 0.0);
    }
}
