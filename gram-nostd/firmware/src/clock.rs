//! Instruction counts from QEMU's virtual clock. Under `-icount shift=0` every guest instruction
//! advances virtual time by exactly 1 ns, and mps2-an386's CMSDK APB timer0 (base 0x4000_0000)
//! counts down at 25 MHz of that time: one tick = 40 instructions, exact to the tick against
//! loops of known length. Without `-icount` the figures are wall-clock noise: the runner in
//! `.cargo/config.toml` always passes it.
//!
//! Instructions are not cycles: QEMU models no wait states and no multi-cycle FPU operations
//! (a Cortex-M4 takes 14 cycles for `vsqrt.f32`, 1 for `vfma.f32`, 2 for a load pair).

const CTRL: usize = 0x4000_0000;
const VALUE: usize = 0x4000_0004;
const RELOAD: usize = 0x4000_0008;
/// Instructions per timer tick (1 ns per instruction, 25 MHz timer).
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

fn write(addr: usize, v: u32) {
    // SAFETY: a documented register of the timer peripheral on this board.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

fn value() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(VALUE as *const u32) }
}

/// Instructions executed by `f` (to within one tick: ±40), and its result.
pub fn instructions<R>(f: impl FnOnce() -> R) -> (R, u64) {
    write(CTRL, 0);
    write(RELOAD, u32::MAX);
    write(VALUE, u32::MAX);
    write(CTRL, 1);
    let t0 = value();
    let r = core::hint::black_box(f());
    let t1 = value();
    (r, (t0 - t1) as u64 * INSTRUCTIONS_PER_TICK)
}
