//! gram-nostd on a microcontroller under QEMU (Cortex-M4F on mps2-an386; RV32IMAC and RV32IMAFC
//! on virt; semihosting): volumes, a score row, candidates through bytes and a loss for fixed
//! vectors with known exact answers, the stack of every entry point, and instruction counts
//! against the naive float32 recipe; exits with failure on any mismatch.
#![no_std]
#![no_main]

mod bench;
mod clock;
mod platform;
mod stack;

use gram_nostd::{
    Arithmetic, Candidate, GramFactor, candidate_at, gram_determinant, gram_loss, log_volume,
    rank_of, score_row, score_row_with, summarize_ranks, volume,
};
#[cfg(target_arch = "arm")]
use panic_semihosting as _;
use platform::hprintln;

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

#[inline(never)]
fn scoring_call(anchor: &[f32], mods: &[&[f32]], cands: &[Candidate], out: &mut [f32]) -> usize {
    score_row(anchor, mods, cands, out)
        .map(|s| s.exact_recomputes)
        .unwrap_or(usize::MAX)
}

/// Modality rows of the instruction-count tables (512 KiB, in .bss).
static mut ROWS: bench::Rows = [0.0; core::mem::size_of::<bench::Rows>() / 4];

unsafe extern "C" {
    // Bounds of .text, from cortex-m-rt's linker script.
    static __stext: u8;
    static __etext: u8;
}

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    hprintln!("board: {}", platform::BOARD);
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
    let (recomputes, used) = stack::used(|| scoring_call(&e0, &mods, &cands, &mut out));
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

    // Candidates shipped as bytes (prepared on a host, flashed) score bit for bit the same.
    let mut bytes = [0u8; Candidate::bytes_len(2)];
    let mut refused = 0;
    let loaded: [Candidate; CANDIDATES] = core::array::from_fn(|j| {
        let back = cands[j]
            .to_bytes(&mut bytes)
            .and_then(|()| Candidate::from_bytes(&bytes));
        refused += back.is_err() as usize;
        back.unwrap_or_else(|_| cands[j].clone())
    });
    let mut again = [0.0f32; CANDIDATES];
    let _ = scoring_call(&e0, &mods, &loaded, &mut again);
    let same = refused == 0
        && again
            .iter()
            .zip(&out)
            .all(|(x, y)| x.to_bits() == y.to_bits());
    hprintln!(
        "candidates through bytes: {} ({} bytes each; {} bytes in RAM)",
        if same { "same scores" } else { "MISMATCH" },
        Candidate::bytes_len(2),
        core::mem::size_of::<Candidate>()
    );
    failures += !same as u32;

    failures += stack_table(&e0, &p, &q, &mods, &cands);

    // Loss over equal volumes: ln B.
    let v = [0.25f32; 9];
    let l = gram_loss(&v, 3, 0.07, 0.1, None).unwrap();
    check("loss uniform", l.loss, LN_3, 1e-12, &mut failures);

    // SAFETY: the only reference to ROWS, taken once.
    let rows = unsafe { &mut *core::ptr::addr_of_mut!(ROWS) };
    hprintln!(
        "\ninstructions per pair / per candidate (QEMU -icount shift=0; instructions, not cycles):"
    );
    bench::header();
    for (d, k, aligned) in [
        (512, 3, false),
        (128, 3, false),
        (512, 4, false),
        (128, 4, false),
        (512, 5, false),
        (128, 5, false),
        (512, 3, true),
    ] {
        failures += bench::run(rows, d, k, aligned);
    }
    bench::kernels(rows, 512);
    bench::kernels(rows, 128);
    // Addresses of linker symbols; nothing is read through them.
    let text = core::ptr::addr_of!(__etext) as usize - core::ptr::addr_of!(__stext) as usize;
    hprintln!(
        "\n.text: {} bytes (this firmware, with its formatting and semihosting)",
        text
    );

    if failures == 0 {
        hprintln!("firmware: all checks passed");
    } else {
        hprintln!("firmware: {} checks FAILED", failures);
    }
    platform::exit(failures == 0)
}

const LN_3: f64 = 1.098_612_288_668_109_6;

/// Stack bytes of each public entry point on small inputs (k = 3, n = 16; the fixed 16×16
/// work arrays make the depth independent of k and n). Fails above 8 KiB.
fn stack_table(e0: &[f32], p: &[f32], q: &[f32], mods: &[&[f32]], cands: &[Candidate]) -> u32 {
    let t = [e0, p, q];
    let mut out = [0.0f32; CANDIDATES];
    let g = [1.0, 0.5, 0.25, 0.5, 2.0, 0.1, 0.25, 0.1, 3.0];
    let scores = [0.5f32, 0.25, 0.75];
    let mut ranks = [3u32, 1, 2];
    let v = [0.25f32; 9];
    let rows: [(&str, usize); 10] = [
        ("volume", stack::used(|| volume(&t)).1),
        ("log_volume", stack::used(|| log_volume(&t)).1),
        ("gram_determinant", stack::used(|| gram_determinant(&t)).1),
        (
            "GramFactor::new",
            stack::used(|| GramFactor::new(&g, 3).map(|f| f.condition())).1,
        ),
        (
            "Candidate::new",
            stack::used(|| candidate_at(mods, N, 0).map(|c| c.volume())).1,
        ),
        (
            "score_row (f32 path)",
            stack::used(|| score_row_with(Arithmetic::Single, e0, mods, cands, &mut out)).1,
        ),
        (
            "score_row (f64 dots)",
            stack::used(|| score_row_with(Arithmetic::Double, e0, mods, cands, &mut out)).1,
        ),
        (
            "gram_loss",
            stack::used(|| gram_loss(&v, 3, 0.07, 0.1, None).map(|l| l.loss)).1,
        ),
        ("rank_of", stack::used(|| rank_of(&scores, 1)).1),
        (
            "summarize_ranks",
            stack::used(|| summarize_ranks(&mut ranks).map(|r| r.meanr)).1,
        ),
    ];
    hprintln!("\n| function | stack bytes |\n|---|---|");
    let mut failures = 0;
    for (name, bytes) in rows {
        hprintln!("| {} | {} |", name, bytes);
        failures += (bytes > 8 * 1024) as u32;
    }
    failures
}
