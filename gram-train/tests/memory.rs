//! What a CPU training step leaves alive, counted by the allocator: over 20 steps of the
//! BERT/CLIP/AST model nothing grows, and between steps only the model, AdamW's two moments
//! and the loaded data remain — no activation, no gradient, no graph (Candle keeps a
//! parameter's gradient with whatever graph node computed it; an op whose backward forgets to
//! detach keeps every activation alive, which this catches).
//!
//! One test in this binary on purpose: the counter is process-wide.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
            LIVE.fetch_add(new, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn live_memory_stays_flat_over_20_cpu_steps() {
    let t = common::memory_over_steps(&candle_core::Device::Cpu, 20, || {
        LIVE.load(Ordering::Relaxed)
    });
    let mib = |b: &usize| (*b as f64 / (1 << 20) as f64 * 100.0).round() / 100.0;
    eprintln!(
        "live MiB: {} before; holding the gradients {:?}; after each step {:?}; parameters {}",
        mib(&t.start),
        t.with_grads.iter().map(mib).collect::<Vec<_>>(),
        t.after.iter().map(mib).collect::<Vec<_>>(),
        mib(&t.param_bytes)
    );
    // Flat: the last step leaves no more than the fifth (the first ones warm caches), ±1 %.
    let (fifth, last) = (t.after[4], t.after[19]);
    assert!(
        last as f64 <= fifth as f64 * 1.01,
        "live memory grew from {fifth} to {last} bytes over 15 steps"
    );
    // Holding the gradients: one parameter set more (and the loader's batch), not the
    // activations — a gradient still carrying its graph node keeps them all alive.
    for (step, (&held, &after)) in t.with_grads.iter().zip(&t.after).enumerate() {
        assert!(
            held <= after + 2 * t.param_bytes,
            "step {step}: {held} bytes live while holding the gradients, {after} after the \
             update, parameters {}: the gradients keep the forward graph alive",
            t.param_bytes
        );
    }
}
