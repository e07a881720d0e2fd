//! What differs between the two boards: semihosting output and exit, the stack pointer, and the
//! instruction counter. Cortex-M4 on QEMU's mps2-an386, RISC-V (rv32) on QEMU's virt machine.

#[cfg(target_arch = "arm")]
pub use cortex_m_semihosting::{debug, hprintln};
#[cfg(target_arch = "riscv32")]
pub use riscv_semihosting::{debug, hprintln};

/// The board, for the report.
pub const BOARD: &str = if cfg!(target_arch = "arm") {
    "Cortex-M4F (qemu-system-arm -machine mps2-an386)"
} else if cfg!(target_feature = "f") {
    "RV32IMAFC (qemu-system-riscv32 -machine virt)"
} else {
    "RV32IMAC, no FPU (qemu-system-riscv32 -machine virt)"
};

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> usize {
    #[cfg(target_arch = "arm")]
    {
        cortex_m::register::msp::read() as usize
    }
    #[cfg(target_arch = "riscv32")]
    {
        let sp: usize;
        // SAFETY: reads the stack pointer register; no memory access.
        unsafe { core::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack)) };
        sp
    }
}

/// Exit QEMU with success or failure (semihosting).
pub fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}

#[cfg(target_arch = "riscv32")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("{}", info);
    exit(false)
}
