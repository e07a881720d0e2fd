//! gram-nostd on a Cortex-M4 (QEMU mps2-an386, semihosting): volumes, a score row and a loss for
//! fixed vectors with known exact answers; exits with failure on any mismatch. Also measures
//! the stack a `score_row` call uses by painting the stack below the caller's frame.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use gram_nostd::{Candidate, candidate_at, gram_loss, score_row, volume};
use panic_semihosting as _;

const N: usize = 16;
const CANDIDATES: usize = 8;

fn unit(i: usize, scale: f32) -> [f32; N] {
    let mut v = [0.0; N];
    v[i] = scale;
    v
}

fn check(name: &str, got: f64, want: f64, rel: f64, failures: &mut u32) {
    let ok = if want == 0.0 {
        got == 0.0
    } else {
        ((got - want) / want).abs() <= rel
    };
    hprintln!(
        "{:<28} got {:e} want {:e} {}",
        name,
        got,
        want,
        if ok { "ok" } else { "MISMATCH" }
    );
    if !ok {
        *failures += 1;
    }
}

/// Painted below the stack pointer before a measured call.
const PAINT: u32 = 0xC0DE_CAFE;
const PAINT_BYTES: usize = 64 * 1024;

/// Fill `PAINT_BYTES` below the current stack pointer (leaving 256 bytes of slack for this
/// function's own frame) and return the top of the painted region.
#[inline(never)]
fn paint_stack() -> usize {
    let sp = cortex_m::register::msp::read() as usize;
    let top = sp - 256;
    for addr in (top - PAINT_BYTES..top).step_by(4) {
        // SAFETY: measuring stack use needs raw writes below SP; the region lies inside RAM
        // (4 MiB, stack at its top) and nothing lives there yet.
        unsafe { core::ptr::write_volatile(addr as *mut u32, PAINT) };
    }
    top
}

/// Bytes of the painted region overwritten since `paint_stack` returned `top`.
fn stack_used(top: usize) -> usize {
    let mut addr = top - PAINT_BYTES;
    // SAFETY: same region as painted above.
    while addr < top && unsafe { core::ptr::read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    top - addr
}

#[inline(never)]
fn scoring_call(anchor: &[f32], mods: &[&[f32]], cands: &[Candidate], out: &mut [f32]) -> usize {
    score_row(anchor, mods, cands, out)
        .map(|s| s.exact_recomputes)
        .unwrap_or(usize::MAX)
}

#[entry]
fn main() -> ! {
    let mut failures = 0u32;

    // 3-4-5 and an orthogonal vector: vol = 5·5.
    let mut a = [0.0f32; N];
    a[0] = 3.0;
    a[1] = 4.0;
    let b = unit(2, 5.0);
    check(
        "volume 3-4-5",
        volume(&[&a[..], &b]).unwrap(),
        25.0,
        1e-15,
        &mut failures,
    );

    // Near-collinear: e0, e0 + ε e1, e0 + ε e2 with ε = 2^-20: vol = ε² exactly. The f32
    // Gram-det recipe returns 0 here.
    let eps = 1.0 / (1u32 << 20) as f32;
    let e0 = unit(0, 1.0);
    let mut p = e0;
    p[1] = eps;
    let mut q = e0;
    q[2] = eps;
    let want = (eps as f64) * (eps as f64);
    check(
        "volume near-collinear",
        volume(&[&e0[..], &p, &q]).unwrap(),
        want,
        1e-9,
        &mut failures,
    );
    // For the record: what the published f32 recipe gets on the same tuple.
    hprintln!(
        "(f32 Gram-det recipe on it:  {:e})",
        gram_nostd::naive::volume_f32(&[&e0[..], &p, &q])
    );
    check(
        "volume duplicate",
        volume(&[&e0[..], &p, &e0]).unwrap(),
        0.0,
        0.0,
        &mut failures,
    );

    // Score row: anchor e0; candidate j = ((j+1)·e_{1+j%7}, 0.5·e0 + 2^-2j·e_{8+j%7}):
    // vol = 1 · (j+1) · 2^-2j.
    let mut m0 = [0.0f32; CANDIDATES * N];
    let mut m1 = [0.0f32; CANDIDATES * N];
    for j in 0..CANDIDATES {
        m0[j * N + 1 + j % 7] = (j + 1) as f32;
        m1[j * N] = 0.5;
        m1[j * N + 8 + j % 7] = 1.0 / (1u32 << (2 * j)) as f32;
    }
    let mods = [&m0[..], &m1[..]];
    let cands: [Candidate; CANDIDATES] =
        core::array::from_fn(|j| candidate_at(&mods, N, j).unwrap());
    let mut out = [0.0f32; CANDIDATES];
    let top = paint_stack();
    let recomputes = scoring_call(&e0, &mods, &cands, &mut out);
    let used = stack_used(top);
    if recomputes == usize::MAX {
        hprintln!("score_row failed");
        failures += 1;
    }
    for (j, &v) in out.iter().enumerate() {
        let want = (j + 1) as f64 / (1u64 << (2 * j)) as f64;
        check("score_row candidate", v as f64, want, 1e-7, &mut failures);
    }
    hprintln!(
        "score_row: {} candidates, {} exact recomputes, stack used {} bytes",
        CANDIDATES,
        recomputes,
        used
    );

    let top = paint_stack();
    let _ = core::hint::black_box(volume(core::hint::black_box(&[&e0[..], &p, &q])));
    hprintln!("volume (k=3, n=16): stack used {} bytes", stack_used(top));

    // Loss over equal volumes: ln B.
    let v = [0.25f32; 9];
    let l = gram_loss(&v, 3, 0.07, 0.1, None).unwrap();
    check("loss uniform", l.loss, LN_3, 1e-12, &mut failures);

    if failures == 0 {
        hprintln!("firmware: all checks passed");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("firmware: {} checks FAILED", failures);
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {}
}

const LN_3: f64 = 1.098_612_288_668_109_6;
