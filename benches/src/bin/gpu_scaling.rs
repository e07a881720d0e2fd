//! GPU volume-matrix benchmark: for N1 = N2 = N, D = 512, k modalities, on the default wgpu
//! adapter, each figure beside the GEMM of the same shapes on the same adapter — the fused
//! kernel's own tiling with the epilogue replaced by writing the cross dots
//! (`GpuScorer::reference_gemm`, device work only): the limit the volume work can reach there.
//! Runs, alternating in one loop, `reps` times each: the reference GEMM, the full volume
//! matrix (`volume_matrix`: dispatches, readback of N² floats, host recomputation of the
//! flagged pairs) and top-10 per anchor (`top_k`: selection on the device, only N·18 results
//! read back, the failed pairs among them recomputed; the count of rows the host had to score
//! whole is printed). Prints medians with [min–max], the ratios to the GEMM,
//! and the worst relative error of 200 sampled entries against gram-nostd's exact path.
//!
//! Run: `cargo run --release -p gram-benches --bin gpu_scaling -- [N,N,…] [k] [reps]`

use gram_benches::unit_rows;
use gram_gpu::{GpuContext, GpuScorer};
use std::time::Instant;

const D: usize = 512;

/// Median and range of `t`, in seconds.
fn stats(t: &mut [f64]) -> (f64, f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0], t[t.len() - 1])
}

fn timed(f: impl FnOnce()) -> f64 {
    let s = Instant::now();
    f();
    s.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ns: Vec<usize> = args
        .get(1)
        .map_or("1024,2048,4096", String::as_str)
        .split(',')
        .map(|x| x.parse().expect("N"))
        .collect();
    let k: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let ctx = match GpuContext::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("no GPU: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "adapter: {}, D = {D}, k = {k}, median [min–max] of {reps}, alternating",
        ctx.describe()
    );
    println!(
        "| N | kernel | factor (s, host) | GEMM N×{}N×D (s) | GEMM GFLOP/s | volume matrix (s) | pairs/s | ÷ GEMM | top-10 (s) | ÷ GEMM | top-10 rows scored on the host | worst rel. err (200 samples) |",
        k - 1
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &ns {
        let anchor = unit_rows(n, D, 1);
        let mods: Vec<Vec<f32>> = (0..k - 1)
            .map(|t| unit_rows(n, D, 100 + t as u64))
            .collect();
        let refs: Vec<&[f32]> = mods.iter().map(|v| v.as_slice()).collect();
        let t = Instant::now();
        let scorer = GpuScorer::new(&ctx, &refs, n, D).expect("scorer");
        let t_factor = t.elapsed().as_secs_f64();
        // Warm-up: compiles the pipelines and touches every buffer once.
        let mut v = scorer.volume_matrix(&anchor).expect("volume matrix");
        scorer.top_k(&anchor, 10).expect("top-k");
        scorer.reference_gemm(&anchor, false).expect("GEMM");
        let (mut tg, mut tv, mut tk) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            tg.push(timed(|| {
                scorer.reference_gemm(&anchor, false).expect("GEMM");
            }));
            tv.push(timed(|| {
                v = scorer.volume_matrix(&anchor).expect("volume matrix")
            }));
            tk.push(timed(|| {
                scorer.top_k(&anchor, 10).expect("top-k");
            }));
        }
        let ((g, g0, g1), (vm, v0, v1), (km, k0, k1)) =
            (stats(&mut tg), stats(&mut tv), stats(&mut tk));
        let flops = 2.0 * (n * n * (k - 1) * D) as f64;
        let mut worst = 0.0f64;
        let mut s = 12345u64;
        for _ in 0..200 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (i, j) = ((s >> 40) as usize % n, (s >> 20) as usize % n);
            let mut t: Vec<&[f32]> = vec![&anchor[i * D..(i + 1) * D]];
            t.extend(refs.iter().map(|m| &m[j * D..(j + 1) * D]));
            let exact = gram_nostd::volume(&t).unwrap();
            let err = (v[i * n + j] as f64 - exact).abs() / exact;
            worst = if err.is_nan() {
                f64::NAN
            } else {
                worst.max(err)
            };
        }
        println!(
            "| {n} | {} | {t_factor:.3} | {g:.3} [{g0:.3}–{g1:.3}] | {:.1} | {vm:.3} [{v0:.3}–{v1:.3}] | {:.2e} | {:.2} | {km:.3} [{k0:.3}–{k1:.3}] | {:.2} | {} of {} | {worst:.1e} |",
            scorer.kernel(),
            flops / g / 1e9,
            (n * n) as f64 / vm,
            vm / g,
            km / g,
            scorer.host_rows_scored(),
            n * (reps + 1)
        );
    }
}
