//! Process-wide settings the training binaries make first thing in `main` ([`configure`]): how
//! their allocator (mimalloc, declared in each binary) treats freed memory, one pool of CPU
//! threads instead of two, and subnormals flushed to zero on every thread that computes; and
//! where the training loop itself runs ([`run_on_pool`]).

/// The three settings below; call once at the start of `main`, before any other thread
/// exists.
pub fn configure() {
    retain_freed_memory();
    one_cpu_thread_pool();
    flush_subnormals_everywhere();
}

/// Flush-to-zero and denormals-are-zero ([`crate::fp_mode`]) on the calling thread and on
/// every thread of rayon's global pool, which this builds (a `start_handler` sets the mode as
/// each worker starts; `RAYON_NUM_THREADS` is honoured as rayon's default would; workers get a
/// [`WORKER_STACK`] stack). The other
/// threads that compute inherit the mode of the thread that starts them: the batch loader
/// ([`crate::data::source::prefetched`]) and Candle's barrier pool (patched in
/// `third_party/candle-core`, `PATCHED.md`), both started later from this thread.
///
/// Call before anything uses rayon. If the global pool already exists (a library caller built
/// it) its threads keep their mode: a warning says so on stderr and only this thread flushes.
pub fn flush_subnormals_everywhere() {
    crate::fp_mode::flush_subnormals();
    let built = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| crate::fp_mode::flush_subnormals())
        .stack_size(WORKER_STACK)
        .build_global();
    if built.is_err() {
        eprintln!(
            "warning: rayon's thread pool was started before gram-train set flush-to-zero; its \
             threads keep their floating-point mode (slow on CPUs that trap subnormals)"
        );
    }
}

/// Stack of each rayon worker: the training loop runs on one ([`run_on_pool`]), and Candle's
/// backward pass walks the graph recursively, a frame per op of its longest chain — a chain of
/// 20,000 ops overflowed the default 2 MiB (`tests/pool.rs`). Address space only, until touched.
pub const WORKER_STACK: usize = 64 << 20;

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

/// Leaves Candle's own element-wise ops (its adds, broadcasts, zero-fills) on the calling
/// thread unless the user set `CANDLE_NUM_THREADS`.
///
/// Why: Candle 0.11 runs those ops on a barrier pool of its own (`candle-bp-N`, one thread per
/// core less the caller) whose threads spin 25,000 `pause`s after every op before sleeping,
/// while the GEMMs and our fused ops run on rayon's pool, also one thread per core. The two
/// pools then share the cores: on the pretraining step (MiniLM + small ViT + AST, B = 64, 2
/// threads) a tenth of all CPU time was `candle-bp-0` spinning, the GEMMs waiting for a
/// descheduled half. With Candle's ops on the caller the step was 1.02–1.27× faster, median
/// 1.14× over 6 alternating rounds (2-core VM, 2026-11-30). What Candle's pool sped up are
/// memory-bound element-wise passes, which one thread streams at most of the bandwidth.
pub fn one_cpu_thread_pool() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: set_var races only with other threads reading the environment; `configure`
        // is documented to run first in `main`, before any thread is spawned.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") }
    }
}

/// Runs `f` — a whole command or training run — on a thread of rayon's global pool when the
/// pool has two threads or more, else on the caller. Call after [`configure`]. A panic in `f`
/// reaches the caller.
///
/// Why: from a thread outside the pool, every parallel op (hundreds a training step) injects
/// its job into the pool and puts the caller to sleep until a worker has finished it — two
/// futex wake-ups per op, a seventh of a heads training step's time on a 2-core Intel Xeon
/// (`perf`: `try_to_wake_up`, `finish_task_switch`). On a worker an op splits into the worker's
/// own queue and the caller computes its share at once. Why not with one thread: the raw-data
/// loader decodes on rayon's pool while the training thread waits for its batch, and a wait on
/// a channel is invisible to rayon — the only worker would wait for itself.
pub fn run_on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() < 2 {
        return f();
    }
    let mut out = None;
    rayon::scope(|s| s.spawn(|_| out = Some(f())));
    out.expect("the spawned job ran to completion (a panic would have propagated)")
}
