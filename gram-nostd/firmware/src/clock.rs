//! Instruction counts from QEMU under `-icount shift=0`, where every guest instruction advances
//! virtual time by exactly 1 ns (the runners in `.cargo/config.toml` always pass it; without it
//! the Arm figures would be wall-clock noise).
//!
//! - Cortex-M4 (mps2-an386): no cycle counter is modelled; the CMSDK APB timer0 (base
//!   0x4000_0000) counts down at 25 MHz of virtual time: one tick = 40 instructions, exact to the
//!   tick against loops of known length.
//! - RISC-V (virt): `minstret`, which QEMU derives from the same instruction count: exact.
//!
//! Instructions are not cycles: QEMU models no wait states and no multi-cycle operations (a
//! Cortex-M4 takes 14 cycles for `vsqrt.f32`, 1 for `vfma.f32`, 1 + n for `vldmia` of n words).

#[cfg(target_arch = "arm")]
mod counter {
    const CTRL: usize = 0x4000_0000;
    const VALUE: usize = 0x4000_0004;
    const RELOAD: usize = 0x4000_0008;
    /// Instructions per timer tick (1 ns per instruction, 25 MHz timer).
    const INSTRUCTIONS_PER_TICK: u64 = 40;

    fn write(addr: usize, v: u32) {
        // SAFETY: a documented register of the timer peripheral on this board.
        unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
    }

    fn value() -> u32 {
        // SAFETY: as above.
        unsafe { core::ptr::read_volatile(VALUE as *const u32) }
    }

    pub fn start() -> u32 {
        write(CTRL, 0);
        write(RELOAD, u32::MAX);
        write(VALUE, u32::MAX);
        write(CTRL, 1);
        value()
    }

    pub fn since(t0: u32) -> u64 {
        (t0 - value()) as u64 * INSTRUCTIONS_PER_TICK
    }
}

#[cfg(target_arch = "riscv32")]
mod counter {
    pub fn start() -> u64 {
        riscv::register::minstret::read64()
    }

    pub fn since(t0: u64) -> u64 {
        riscv::register::minstret::read64() - t0
    }
}

/// Instructions executed by `f` (Cortex-M4: to within one tick, ±40), and its result.
pub fn instructions<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let t0 = counter::start();
    let r = core::hint::black_box(f());
    (r, counter::since(t0))
}
