//! How the training binaries' allocator (mimalloc, declared in each binary) treats freed memory.

/// mimalloc's `mi_option_purge_delay` (15 in both the v2 and v3 headers of libmimalloc-sys
/// 0.1.x; the Rust bindings do not name it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in mimalloc's arenas for reuse instead of returning it to the OS.
///
/// Why: a training step frees its activations and allocates the same sizes again in the
/// next one. Returned to the OS (mimalloc's default, after 10 ms), every page comes back
/// through a page fault that zeroes it: a quarter of a CPU pretraining step's time was the
/// kernel's `clear_page` (perf, MiniLM + small ViT + AST, B = 64) and the optimizer, which
/// writes fresh parameter and moment buffers, ran 4× slower. The process then holds its peak
/// (which it reaches again every step anyway). Call once, early in `main`; a no-op for
/// whatever other allocator a program declares.
pub fn retain_freed_memory() {
    // SAFETY: mi_option_set only stores an integer option; mimalloc reads it at its next purge.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}
