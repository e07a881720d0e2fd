//! GPU volume-matrix benchmark (issue 4): for N1 = N2 = N, D = 512, k modalities, on the default
//! wgpu adapter: host factorisation of the candidates (`GpuScorer::new`), the full volume
//! matrix (`volume_matrix`: dispatches + readback of N² floats + f64 assembly), and top-10 per
//! anchor (`top_k`: candidates streamed, only N·10 results read back); plus the worst relative
//! error of 200 sampled entries against gram-nostd's exact path.
//!
//! Run: `cargo run --release -p gram-benches --bin gpu_scaling -- [N,N,…] [k] [reps]`

use gram_benches::{median_secs, unit_rows};
use gram_gpu::{GpuContext, GpuScorer};
use std::time::Instant;

const D: usize = 512;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ns: Vec<usize> = args
        .get(1)
        .map_or("1024,2048,4096", String::as_str)
        .split(',')
        .map(|x| x.parse().expect("N"))
        .collect();
    let k: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let ctx = match GpuContext::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("no GPU: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "adapter: {}, D = {D}, k = {k}, median of {reps}",
        ctx.describe()
    );
    println!(
        "| N | factor candidates (s, host) | volume matrix (s) | pairs/s | top-10 (s) | worst rel. err (200 samples) |"
    );
    println!("|---|---|---|---|---|---|");
    for &n in &ns {
        let anchor = unit_rows(n, D, 1);
        let mods: Vec<Vec<f32>> = (0..k - 1)
            .map(|t| unit_rows(n, D, 100 + t as u64))
            .collect();
        let refs: Vec<&[f32]> = mods.iter().map(|v| v.as_slice()).collect();
        let t = Instant::now();
        let scorer = GpuScorer::new(&ctx, &refs, n, D).expect("scorer");
        let t_factor = t.elapsed().as_secs_f64();
        let mut v = Vec::new();
        let t_matrix = median_secs(reps, || {
            v = scorer.volume_matrix(&anchor).expect("volume matrix")
        });
        let t_topk = median_secs(reps, || {
            scorer.top_k(&anchor, 10).expect("top-k");
        });
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
            "| {n} | {t_factor:.3} | {t_matrix:.3} | {:.3e} | {t_topk:.3} | {worst:.1e} |",
            (n * n) as f64 / t_matrix
        );
    }
}
