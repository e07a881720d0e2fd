//! The two single-precision FPU instructions the f32 path needs and stable Rust does not emit on
//! these targets: fused multiply-add (`core` has no `f32::mul_add` without std, `libm::fmaf` is
//! software) and square root (`libm::sqrtf` is software). Only compiled where the build script
//! found the instructions in the target (`gram_arm_vfp4`, `gram_riscv_f`).
//!
//! Operands go through general-purpose registers into fixed FPU registers declared clobbered:
//! stable Rust refuses the FPU register classes on single-precision-only targets (Arm's `sreg`
//! asks for `vfp2`, which implies f64), but accepts fixed registers as clobbers. The moves cost
//! about 6 instructions per call; the callers are the refinement tier and once per pair.
#![allow(unsafe_code)]

/// `a·b + c` with one rounding.
#[inline(always)]
pub fn fma32(a: f32, b: f32, c: f32) -> f32 {
    let r: u32;
    // SAFETY: register-only FPU instructions the target is built to have (build.rs); no memory
    // is touched, and every FPU register written is declared clobbered.
    #[cfg(gram_arm_vfp4)]
    unsafe {
        core::arch::asm!(
            "vmov s0, {a}", "vmov s1, {b}", "vmov s2, {c}", "vfma.f32 s2, s0, s1", "vmov {r}, s2",
            a = in(reg) a.to_bits(), b = in(reg) b.to_bits(), c = in(reg) c.to_bits(),
            r = lateout(reg) r, out("s0") _, out("s1") _, out("s2") _,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    // SAFETY: as above (the `f` extension).
    #[cfg(gram_riscv_f)]
    unsafe {
        core::arch::asm!(
            "fmv.w.x ft0, {a}", "fmv.w.x ft1, {b}", "fmv.w.x ft2, {c}",
            "fmadd.s ft2, ft0, ft1, ft2", "fmv.x.w {r}, ft2",
            a = in(reg) a.to_bits(), b = in(reg) b.to_bits(), c = in(reg) c.to_bits(),
            r = lateout(reg) r, out("ft0") _, out("ft1") _, out("ft2") _,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    f32::from_bits(r)
}

/// √x, correctly rounded (IEEE 754).
#[inline(always)]
pub fn sqrt32(x: f32) -> f32 {
    let r: u32;
    // SAFETY: as for `fma32`.
    #[cfg(gram_arm_vfp4)]
    unsafe {
        core::arch::asm!(
            "vmov s0, {x}", "vsqrt.f32 s0, s0", "vmov {r}, s0",
            x = in(reg) x.to_bits(), r = lateout(reg) r, out("s0") _,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    // SAFETY: as above.
    #[cfg(gram_riscv_f)]
    unsafe {
        core::arch::asm!(
            "fmv.w.x ft0, {x}", "fsqrt.s ft0, ft0", "fmv.x.w {r}, ft0",
            x = in(reg) x.to_bits(), r = lateout(reg) r, out("ft0") _,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    f32::from_bits(r)
}

/// One compensated lane step of `single::dot2_32` for lane registers `$s` (sum), `$c`
/// (compensation), `$x`·`$y`: s16 = p = fl(x·y), s17 = x·y − p (fused: exact), TwoSum of s
/// and p into s18 + s20, c += e + pe. Same operations in the same order as the portable code.
#[cfg(gram_arm_vfp4)]
macro_rules! dot2_lane {
    ($s:literal, $c:literal, $x:literal, $y:literal) => {
        concat!(
            "vmul.f32 s16, ",
            $x,
            ", ",
            $y,
            "\n",
            "vmov.f32 s17, s16\n",
            "vfnms.f32 s17, ",
            $x,
            ", ",
            $y,
            "\n",
            "vadd.f32 s18, ",
            $s,
            ", s16\n",
            "vsub.f32 s19, s18, ",
            $s,
            "\n",
            "vsub.f32 s20, s18, s19\n",
            "vsub.f32 s20, ",
            $s,
            ", s20\n",
            "vsub.f32 s19, s16, s19\n",
            "vadd.f32 s20, s20, s19\n",
            "vadd.f32 s20, s20, s17\n",
            "vadd.f32 ",
            $c,
            ", ",
            $c,
            ", s20\n",
            "vmov.f32 ",
            $s,
            ", s18\n",
        )
    };
}

/// The 4-lane compensated loop of `single::dot2_32` over whole blocks of 4, on state
/// `[s0..s3, c0..c3]`: hand-scheduled because the compiler cannot be told to keep the
/// lanes in registers across the fused multiply-add (which it only reaches through `fma32`'s
/// register moves: 26 instructions per element, against 13 here).
#[cfg(gram_arm_vfp4)]
pub fn dot2_blocks(a: &[[f32; 4]], b: &[[f32; 4]], state: &mut [f32; 8]) {
    let n = a.len().min(b.len());
    if n == 0 {
        return;
    }
    // SAFETY: reads n blocks of 4 f32 from each slice (n ≤ both lengths) and 8 f32 from and
    // to `state`; every FPU register written is declared clobbered; no stack use.
    unsafe {
        core::arch::asm!(
            "vldmia {st}, {{s0-s7}}",
            "2:",
            "vldmia {a}!, {{s8-s11}}",
            "vldmia {b}!, {{s12-s15}}",
            dot2_lane!("s0", "s4", "s8", "s12"),
            dot2_lane!("s1", "s5", "s9", "s13"),
            dot2_lane!("s2", "s6", "s10", "s14"),
            dot2_lane!("s3", "s7", "s11", "s15"),
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {st}, {{s0-s7}}",
            a = inout(reg) a.as_ptr() => _,
            b = inout(reg) b.as_ptr() => _,
            n = inout(reg) n => _,
            st = in(reg) state.as_mut_ptr(),
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
            out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _,
            out("s17") _, out("s18") _, out("s19") _, out("s20") _,
            options(nostack)
        );
    }
}

/// `acc_l (+)= x_l·y_l` for 8 lanes (`vmul` on the first quarter of a block, `vmla` after).
#[cfg(gram_arm_vfp4)]
macro_rules! mla8 {
    ($op:literal) => {
        concat!(
            "vldmia {a}!, {{s16-s23}}\n",
            "vldmia {b}!, {{s24-s31}}\n",
            $op,
            " s8, s16, s24\n",
            $op,
            " s9, s17, s25\n",
            $op,
            " s10, s18, s26\n",
            $op,
            " s11, s19, s27\n",
            $op,
            " s12, s20, s28\n",
            $op,
            " s13, s21, s29\n",
            $op,
            " s14, s22, s30\n",
            $op,
            " s15, s23, s31\n",
        )
    };
}

/// The block loop of `single::dot32` over whole blocks of 32, on state `[s, c]`: 8 lanes of 4
/// terms (`vmla.f32`: fl(acc + fl(x·y)), as the portable code), pairwise across lanes, then
/// TwoSum into (s, c). Hand-scheduled so that each 8 elements of each input come in one
/// `vldmia` (the compiler's register choice splits them into single loads: 4.6 instructions
/// per element, against 1.8 here).
#[cfg(gram_arm_vfp4)]
pub fn dot32_blocks(a: &[[f32; 32]], b: &[[f32; 32]], state: &mut [f32; 2]) {
    let n = a.len().min(b.len());
    if n == 0 {
        return;
    }
    // SAFETY: reads n blocks of 32 f32 from each slice (n ≤ both lengths) and 2 f32 from and
    // to `state`; every FPU register written is declared clobbered; no stack use.
    unsafe {
        core::arch::asm!(
            "vldmia {st}, {{s0-s1}}",
            "2:",
            mla8!("vmul.f32"),
            mla8!("vmla.f32"),
            mla8!("vmla.f32"),
            mla8!("vmla.f32"),
            // ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))
            "vadd.f32 s2, s8, s12",
            "vadd.f32 s3, s9, s13",
            "vadd.f32 s4, s10, s14",
            "vadd.f32 s5, s11, s15",
            "vadd.f32 s2, s2, s3",
            "vadd.f32 s4, s4, s5",
            "vadd.f32 s2, s2, s4",
            // TwoSum(s, block) → (s, c += e)
            "vadd.f32 s3, s0, s2",
            "vsub.f32 s4, s3, s0",
            "vsub.f32 s5, s3, s4",
            "vsub.f32 s5, s0, s5",
            "vsub.f32 s4, s2, s4",
            "vadd.f32 s5, s5, s4",
            "vadd.f32 s1, s1, s5",
            "vmov.f32 s0, s3",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {st}, {{s0-s1}}",
            a = inout(reg) a.as_ptr() => _,
            b = inout(reg) b.as_ptr() => _,
            n = inout(reg) n => _,
            st = in(reg) state.as_mut_ptr(),
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _,
            out("s14") _, out("s15") _, out("s16") _, out("s17") _, out("s18") _,
            out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _,
            out("s29") _, out("s30") _, out("s31") _,
            options(nostack)
        );
    }
}
