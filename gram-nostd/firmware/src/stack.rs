//! Stack use of a call, measured by painting the stack below the caller's frame and finding the
//! deepest word overwritten.

/// Painted below the stack pointer before a measured call.
const PAINT: u32 = 0xC0DE_CAFE;
const PAINT_BYTES: usize = 64 * 1024;

/// Fill `PAINT_BYTES` below the current stack pointer (leaving 256 bytes of slack for this
/// function's own frame) and return the top of the painted region.
#[inline(never)]
fn paint() -> usize {
    let sp = crate::platform::stack_pointer();
    let top = sp - 256;
    for addr in (top - PAINT_BYTES..top).step_by(4) {
        // SAFETY: measuring stack use needs raw writes below SP; the region lies inside RAM
        // (4 MiB on mps2-an386, 16 MiB on virt; the stack at its top) and nothing lives there yet.
        unsafe { core::ptr::write_volatile(addr as *mut u32, PAINT) };
    }
    top
}

/// Bytes of the painted region overwritten since `paint` returned `top`.
fn used_since(top: usize) -> usize {
    let mut addr = top - PAINT_BYTES;
    // SAFETY: same region as painted above.
    while addr < top && unsafe { core::ptr::read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    top - addr
}

/// Bytes of stack `f` used below the caller's frame, and its result.
#[inline(never)]
pub fn used<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let top = paint();
    let r = core::hint::black_box(call(f));
    (r, used_since(top))
}

/// A frame of its own for `f`: inlined into `used`, its locals would sit in `used`'s frame,
/// allocated before the painting, and go uncounted.
#[inline(never)]
fn call<R>(f: impl FnOnce() -> R) -> R {
    f()
}
