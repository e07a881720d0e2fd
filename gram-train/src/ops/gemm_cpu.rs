//! f32 matrix products on strided views of slices, through the `gemm` crate (Candle's CPU
//! matmul): one call on the calling thread ([`gemm_f32`]), or the destination's rows split
//! into one block per rayon thread ([`gemm_rows`]).
//!
//! Why split the rows ourselves: with `Parallelism::Rayon` the crate forks and joins its
//! threads once per packed block of the inner dimension and splits the work within each
//! block; on the layers' shapes (832–4352 rows, 128–1536 wide) that ran at 82–90 % of the
//! speed of one contiguous block of rows per thread, single-threaded each, and at 55–75 % for
//! the weight gradients ∂W = ∂yᵀ·x, whose output is small and whose inner dimension is long
//! (interleaved microbenchmark, 2 threads, 2026-11-30). Each task packs the shared operand
//! itself; that costs 1/rows of its products.
//!
//! Accuracy: what the crate gives — each element a sum of f32 products in f32, blocked (no
//! bound beyond the usual k·2⁻²⁴·Σ|aᵢbᵢ|); the split does not change any element's sum.

use super::subnormals;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::panic::Location;

/// A read-only strided matrix operand: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Src<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// A row-major destination (column stride 1); `accumulate` adds to what is there.
pub(crate) struct Dst<'a> {
    data: &'a mut [f32],
    rs: usize,
    accumulate: bool,
}

/// `data` read as a matrix with row stride `rs` and column stride `cs`.
pub(crate) fn view(data: &[f32], rs: usize, cs: usize) -> Src<'_> {
    Src { data, rs, cs }
}

/// `data` written as a row-major matrix with row stride `rs`, added to if `accumulate`.
pub(crate) fn into(data: &mut [f32], rs: usize, accumulate: bool) -> Dst<'_> {
    Dst {
        data,
        rs,
        accumulate,
    }
}

/// dst (+)= alpha·a·b for a [m, k], b [k, n], dst [m, n], on the calling thread. Panics if a
/// view reaches past its slice — a bug in the caller, never input.
#[track_caller]
pub(crate) fn gemm_f32((m, n, k): (usize, usize, usize), dst: Dst, a: Src, b: Src, alpha: f32) {
    assert_fits((m, n, k), dst.data.len(), dst.rs, a, b);
    // SAFETY: `assert_fits` keeps every element the three views address inside its slice;
    // `dst` is borrowed mutably, so it does not alias `a` or `b`.
    unsafe {
        gemm_raw(
            (m, n, k),
            dst.data.as_mut_ptr(),
            dst.rs,
            dst.accumulate,
            a,
            b,
            alpha,
            Location::caller(),
        )
    }
}

/// Panics unless a [m, k] and b [k, n] lie inside their slices and a row-major [m, n] with
/// row stride `rs` inside `dst_len` elements.
fn assert_fits((m, n, k): (usize, usize, usize), dst_len: usize, rs: usize, a: Src, b: Src) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(
        m * n == 0
            || (last(m, n, rs, 1) < dst_len
                && (k == 0
                    || (last(m, k, a.rs, a.cs) < a.data.len()
                        && last(k, n, b.rs, b.cs) < b.data.len()))),
        "gemm: a view reaches past its buffer"
    );
}

/// The crate's call. Without `accumulate` the crate never reads dst (it sets its own scale of
/// dst to zero, writes zeros when k = 0, and its kernels store without loading when that
/// scale is zero), so dst may be uninitialised memory.
///
/// `site` is the caller's location, for the [`subnormals`] probe when it is on.
///
/// # Safety
/// The views and a row-major [m, n] at `dst` with row stride `dst_rs` must lie inside their
/// allocations ([`assert_fits`]), and dst must not overlap a or b.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: Src,
    b: Src,
    alpha: f32,
    site: &Location<'_>,
) {
    if m * n == 0 {
        return;
    }
    let probe = subnormals::enabled();
    // SAFETY (both counts): the caller's contract keeps every addressed element in bounds;
    // dst is read only after the crate wrote it.
    let operands = probe.then(|| unsafe {
        (
            subnormals::count(a.data.as_ptr(), (m, k), a.rs, a.cs),
            subnormals::count(b.data.as_ptr(), (k, n), b.rs, b.cs),
        )
    });
    // SAFETY: the caller's contract.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            ::gemm::Parallelism::None,
        )
    }
    if let Some((lhs, rhs)) = operands {
        // SAFETY: dst's [m, n] lies in its allocation (the caller's contract), written above.
        let out = unsafe { subnormals::count(dst, (m, n), dst_rs, 1) };
        subnormals::record(site, 2 * (m * n * k) as u64, lhs, rhs, out);
    }
}

/// Rows per task: one block per rayon thread, a multiple of 32 — which the crate's f32
/// microkernel heights divide (16 rows with AVX2, 32 with AVX-512) — so that only the last
/// block has a ragged edge.
fn rows_per_task(m: usize) -> usize {
    m.div_ceil(rayon::current_num_threads().max(1))
        .next_multiple_of(32)
        .max(32)
}

/// a·b (+ `init` added to every row, when given) for a [m, k], b [k, n], as a new row-major
/// [m, n], its rows split across rayon's threads. The buffer is never zero-filled: each
/// task's rows are written once, by the bias copy or the crate. (Zero-filling ran on the
/// calling thread while the others waited; memsets there were ~3 % of the pretraining step's
/// samples in `perf`, not all of them these; the gain in the whole step was not measured
/// beyond the VM's ±5 % noise.)
#[track_caller]
pub(crate) fn gemm_rows(
    (m, n, k): (usize, usize, usize),
    init: Option<&[f32]>,
    a: Src,
    b: Src,
) -> Vec<f32> {
    assert!(init.is_none_or(|r| r.len() == n));
    let site = Location::caller();
    let mut dst: Vec<MaybeUninit<f32>> = Vec::with_capacity(m * n);
    // SAFETY: MaybeUninit<f32> needs no initialisation; the capacity is m·n.
    unsafe { dst.set_len(m * n) };
    if m * n > 0 {
        let rows = rows_per_task(m);
        dst.par_chunks_mut(rows * n)
            .enumerate()
            .for_each(|(t, block)| {
                let r0 = t * rows;
                let a = view(&a.data[(r0 * a.rs).min(a.data.len())..], a.rs, a.cs);
                if let Some(row) = init {
                    for r in block.chunks_mut(n) {
                        r.iter_mut().zip(row).for_each(|(d, &v)| {
                            d.write(v);
                        });
                    }
                }
                let dims = (block.len() / n, n, k);
                assert_fits(dims, block.len(), n, a, b);
                // SAFETY: checked by `assert_fits`; the block is this task's own, written
                // (not read) by the crate unless the bias rows above initialised it.
                unsafe {
                    gemm_raw(
                        dims,
                        block.as_mut_ptr().cast(),
                        n,
                        init.is_some(),
                        a,
                        b,
                        1.0,
                        site,
                    )
                }
            });
    }
    // SAFETY: every element was written above (MaybeUninit<f32> and f32 share layout); the
    // ManuallyDrop hands the allocation over to the new Vec exactly once.
    let mut dst = std::mem::ManuallyDrop::new(dst);
    unsafe { Vec::from_raw_parts(dst.as_mut_ptr().cast::<f32>(), dst.len(), dst.capacity()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout the callers use (plain, either operand transposed), ragged, one-row and
    /// one-column blocks and empty sizes, with and without a row added — against an f64
    /// triple loop. A NaN-filled buffer of the same size is freed just before each call, so
    /// the allocator most likely hands its memory over: an element the crate read instead of
    /// writing would come out NaN.
    #[test]
    fn rows_split_equals_the_f64_product() {
        for (m, n, k) in [
            (1, 1, 1),
            (5, 3, 7),
            (17, 1, 9),
            (40, 33, 17),
            (130, 65, 200),
            (3, 4, 0),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 - 2.0).collect();
            // a read plainly ([m, k], rs = k) and transposed from a [k, m] copy (rs = 1).
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            for (av, a_t) in [(view(&a, k, 1), false), (view(&at, 1, m), true)] {
                for init in [None, Some(&bias[..])] {
                    drop(std::hint::black_box(vec![f32::NAN; m * n]));
                    let dst = gemm_rows((m, n, k), init, av, view(&b, n, 1));
                    assert_eq!(dst.len(), m * n);
                    for i in 0..m {
                        for j in 0..n {
                            let exact: f64 = (0..k)
                                .map(|l| f64::from(a[i * k + l]) * f64::from(b[l * n + j]))
                                .sum::<f64>()
                                + init.map_or(0.0, |r| f64::from(r[j]));
                            let got = f64::from(dst[i * n + j]);
                            assert!(
                                (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                                "{m}×{n}×{k}, a transposed {a_t}, init {}: [{i},{j}] {got} vs {exact}",
                                init.is_some()
                            );
                        }
                    }
                }
            }
        }
    }
}
