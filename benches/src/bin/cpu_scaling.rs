//! CPU volume-matrix benchmark: for N1 = N2 = N, D = 512 and k modalities, the
//! median wall time of
//!   - `gram`: `Scorer::new` + `volume_matrix` (the compute of `gram score`, no file I/O),
//!   - `naive`: the published recipe batched the same way — Gram matrices from the same GEMM
//!     cross dots (+ f32 within-candidate and anchor dots), f32 LU determinant, sqrt(|det|),
//!   - `gemm`: the k−1 cross-dot GEMMs alone, same tiling and threads (the limit).
//!
//! Run: `cargo run --release -p gram-benches --bin cpu_scaling -- [N,N,…] [k,k,…] [reps]`
//! (defaults: 1024,2048,4096 3 3). Prints a markdown table.

use gram_benches::median_secs;
use gram_host::cpu::{Scorer, TILE_COLS, TILE_ROWS, sgemm_abt};
use gram_nostd::naive::{det_f32, dot_f32};
use rayon::prelude::*;

const D: usize = 512;

/// The cross-dot GEMMs of every tile, nothing else; `per_tile` sees each tile's dots.
fn gemm_tiles(
    anchor: &[f32],
    mods: &[&[f32]],
    n2: usize,
    out: &mut [f32],
    per_tile: impl Fn(&[f32], usize, usize, &[f32], &mut [f32]) + Sync,
) {
    out.par_chunks_mut(TILE_ROWS * n2)
        .zip(anchor.par_chunks(TILE_ROWS * D))
        .for_each(|(block, rows)| {
            let r = rows.len() / D;
            let mut dots = vec![0.0f32; mods.len() * r * TILE_COLS];
            for c0 in (0..n2).step_by(TILE_COLS) {
                let cols = TILE_COLS.min(n2 - c0);
                for (t, m) in mods.iter().enumerate() {
                    sgemm_abt(
                        rows,
                        &m[c0 * D..(c0 + cols) * D],
                        D,
                        &mut dots[t * r * cols..(t + 1) * r * cols],
                    );
                }
                per_tile(rows, c0, cols, &dots, block);
            }
        });
}

fn naive(anchor: &[f32], mods: &[&[f32]], n2: usize, out: &mut [f32]) {
    let m = mods.len();
    let k = m + 1;
    // Within-candidate Gram entries and anchor norms, f32 like the recipe.
    let inner: Vec<f32> = (0..n2)
        .into_par_iter()
        .flat_map_iter(|j| {
            let rows: Vec<&[f32]> = mods.iter().map(|x| &x[j * D..(j + 1) * D]).collect();
            (0..m)
                .flat_map(move |s| (0..m).map(move |t| (s, t)))
                .map(move |(s, t)| dot_f32(rows[s], rows[t]))
                .collect::<Vec<_>>()
        })
        .collect();
    gemm_tiles(anchor, mods, n2, out, |rows, c0, cols, dots, block| {
        let r = rows.len() / D;
        let mut g = [0.0f32; 16 * 16];
        for i in 0..r {
            let a = &rows[i * D..(i + 1) * D];
            let aa = dot_f32(a, a);
            for jj in 0..cols {
                let j = c0 + jj;
                // Every entry of the k×k Gram matrix is rewritten: no zeroing per pair.
                g[0] = aa;
                for t in 0..m {
                    let d = dots[t * r * cols + i * cols + jj];
                    g[t + 1] = d;
                    g[(t + 1) * k] = d;
                    for s in 0..m {
                        g[(s + 1) * k + t + 1] = inner[j * m * m + s * m + t];
                    }
                }
                block[i * n2 + j] = det_f32(&mut g[..k * k], k).abs().sqrt();
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("write") {
        // `cpu_scaling write DIR N k`: unit-row inputs for timing `gram score` itself.
        let dir = std::path::Path::new(&args[2]);
        let (n, k): (usize, usize) = (args[3].parse().unwrap(), args[4].parse().unwrap());
        gram_host::output::write_npy_f32(
            &dir.join("anchor.npy"),
            &[n, D],
            &gram_benches::unit_rows(n, D, 1),
        )
        .unwrap();
        for t in 0..k - 1 {
            let path = dir.join(format!("mod{t}.npy"));
            gram_host::output::write_npy_f32(
                &path,
                &[n, D],
                &gram_benches::unit_rows(n, D, 100 + t as u64),
            )
            .unwrap();
        }
        return;
    }
    let list = |i: usize, default: &str| -> Vec<usize> {
        args.get(i)
            .map(String::as_str)
            .unwrap_or(default)
            .split(',')
            .map(|x| x.parse().expect("a number"))
            .collect()
    };
    let ns = list(1, "1024,2048,4096");
    let ks = list(2, "3");
    let reps = list(3, "3")[0];
    println!(
        "threads: {}, D = {D}, median of {reps}",
        rayon::current_num_threads()
    );
    println!(
        "| N | k | gram compute (s) | naive f32 recipe (s) | GEMMs alone (s) | gram / GEMM | f64 recomputes |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &k in &ks {
        for &n in &ns {
            let anchor = gram_benches::unit_rows(n, D, 1);
            let mods_owned: Vec<Vec<f32>> = (0..k - 1)
                .map(|t| gram_benches::unit_rows(n, D, 100 + t as u64))
                .collect();
            let mods: Vec<&[f32]> = mods_owned.iter().map(|v| v.as_slice()).collect();
            let mut out = vec![0.0f32; n * n];
            let mut recomputes = 0;
            let t_gram = median_secs(reps, || {
                let scorer = Scorer::new(&mods, n, D).unwrap();
                recomputes = scorer
                    .volume_matrix(&anchor, &mut out)
                    .unwrap()
                    .f64_recomputes;
            });
            let t_naive = median_secs(reps, || naive(&anchor, &mods, n, &mut out));
            let t_gemm = median_secs(reps, || {
                gemm_tiles(&anchor, &mods, n, &mut out, |_, _, _, _, _| {})
            });
            println!(
                "| {n} | {k} | {t_gram:.3} | {t_naive:.3} | {t_gemm:.3} | {:.2} | {recomputes} |",
                t_gram / t_gemm
            );
        }
    }
}
