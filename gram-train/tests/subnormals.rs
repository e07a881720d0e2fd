//! Subnormal floats must not reach the GEMMs of a training step (they cost an Intel core a
//! microcode assist per multiply: the pretraining step ran 3× slower there than on AMD). The
//! test counts values by their bits (`gram_train::ops::subnormals`), so it fails on any
//! machine when they come back, not only on the CPUs that slow down.
//!
//! One test in this file: it sets the process's floating-point policy and rayon's global pool.

mod common;

use gram_train::ops::subnormals::{self, SiteCounts};
use std::collections::BTreeMap;

/// GEMM calls and subnormal values over every call site.
fn totals(counts: &BTreeMap<String, SiteCounts>) -> (u64, u64) {
    counts
        .values()
        .fold((0, 0), |(calls, sub), c| (calls + c.calls, sub + c.total()))
}

/// The small BERT/CLIP/AST model's GRAM + DAM steps with AdamW, the probe on.
fn train_steps(steps: u64) -> BTreeMap<String, SiteCounts> {
    subnormals::take();
    subnormals::enable(true);
    common::memory_over_steps(&candle_core::Device::Cpu, steps, || 0);
    subnormals::enable(false);
    subnormals::take()
}

#[test]
fn no_subnormals_reach_the_gemms_of_a_training_step() {
    // Candle's element-wise ops on the calling thread, as the binaries run them (its own pool
    // would otherwise be started by the first phase's thread and keep that thread's mode).
    gram_train::process::one_cpu_thread_pool();

    // In the default floating-point mode, as a library caller runs it: no op of ours hands a
    // GEMM a subnormal operand (a masked key's probability was the source: exactly 0 now).
    // A result may still underflow (a tiny gradient times a tiny activation), which the
    // policy below handles.
    let plain = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let without = plain.install(|| train_steps(4));
    let calls: u64 = without.values().map(|c| c.calls).sum();
    assert!(calls > 0, "the probe saw no GEMM");
    let operands: Vec<_> = without.iter().filter(|(_, c)| c.lhs + c.rhs > 0).collect();
    assert!(
        operands.is_empty(),
        "subnormal GEMM operands in the default mode: {operands:?}"
    );

    // With the policy training binaries set first thing (`process::configure`): none at all.
    gram_train::process::flush_subnormals_everywhere();
    let with = train_steps(4);
    let (calls, seen) = totals(&with);
    assert!(calls > 0, "the probe saw no GEMM");
    let offenders: Vec<_> = with.iter().filter(|(_, c)| c.total() > 0).collect();
    assert_eq!(seen, 0, "subnormals reached the GEMMs: {offenders:?}");
}
