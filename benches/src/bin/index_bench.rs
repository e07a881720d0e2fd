//! Corpus-scale retrieval: data for `scripts/index-bench.sh`, and the GEMMs that a
//! search of the same shapes cannot avoid, timed on the same machine in the same run.
//!
//! - `index_bench gen DIR N Q[,Q…] D`: DIR/v.npy and DIR/a.npy ([N, D], unit rows; row j of
//!   `a` leans towards row j of `v` so the corpus has structure) and DIR/`q<Q>`.npy queries,
//!   written in blocks (never the whole corpus in memory).
//! - `index_bench gemm DIR Q`: the two cross-dot GEMMs of `q<Q>`.npy against v.npy and a.npy
//!   ([Q, D] × [N, D]ᵀ each), tiled and threaded as gram's search tiles them (anchor tiles ×
//!   candidate ranges over rayon, [`sgemm_abt`] per block) with the products left in per-task
//!   buffers — the floor a search of those shapes runs against. Prints JSON.

use gram_host::cpu::{TILE_COLS, TILE_ROWS, sgemm_abt};
use gram_host::input;
use gram_host::output::npy_header_f32;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

fn unit_rows(rng: &mut ChaCha8Rng, rows: usize, d: usize, lean: Option<&[f32]>) -> Vec<f32> {
    let mut x: Vec<f32> = (0..rows * d).map(|_| rng.random::<f32>() - 0.5).collect();
    for (i, row) in x.chunks_mut(d).enumerate() {
        if let Some(base) = lean {
            for (v, b) in row.iter_mut().zip(&base[i * d..(i + 1) * d]) {
                *v = 0.3 * *v + *b;
            }
        }
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= n);
    }
    x
}

fn generate(dir: &Path, n: usize, queries: &[usize], d: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let open = |name: &str, rows: usize| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(name)).unwrap());
        f.write_all(&npy_header_f32(&[rows, d])).unwrap();
        f
    };
    let (mut v, mut a) = (open("v.npy", n), open("a.npy", n));
    for start in (0..n).step_by(65536) {
        let rows = 65536.min(n - start);
        let vb = unit_rows(&mut rng, rows, d, None);
        let ab = unit_rows(&mut rng, rows, d, Some(&vb));
        v.write_all(bytemuck::cast_slice(&vb)).unwrap();
        a.write_all(bytemuck::cast_slice(&ab)).unwrap();
    }
    for &q in queries {
        let mut f = open(&format!("q{q}.npy"), q);
        f.write_all(bytemuck::cast_slice(&unit_rows(&mut rng, q, d, None)))
            .unwrap();
    }
}

fn gemm(dir: &Path, q: usize) {
    let load = |name: &str| input::load(dir.join(name).to_str().unwrap()).unwrap();
    let (queries, v, a) = (load(&format!("q{q}.npy")), load("v.npy"), load("a.npy"));
    let (n, d) = (v.rows, v.cols);
    let mods = [v.as_slice(), a.as_slice()];
    // Touch the candidates once so both sides start from the page cache.
    let warm: f32 = mods
        .iter()
        .map(|m| m.par_iter().step_by(1024).sum::<f32>())
        .sum();
    let cols_per_task = 16 * TILE_COLS;
    let (tiles, ranges) = (q.div_ceil(TILE_ROWS), n.div_ceil(cols_per_task));
    let t = Instant::now();
    let checksum: f64 = (0..tiles * ranges)
        .into_par_iter()
        .map(|task| {
            let (ti, c) = (task / ranges, task % ranges);
            let r = (q - ti * TILE_ROWS).min(TILE_ROWS);
            let rows = &queries.as_slice()[ti * TILE_ROWS * d..][..r * d];
            let mut dots = vec![0.0f32; r * TILE_COLS];
            let mut sum = 0.0f64;
            let end = ((c + 1) * cols_per_task).min(n);
            for c0 in (c * cols_per_task..end).step_by(TILE_COLS) {
                let cols = TILE_COLS.min(end - c0);
                for m in &mods {
                    sgemm_abt(&m[c0 * d..(c0 + cols) * d], rows, d, &mut dots[..r * cols]);
                    sum += dots[0] as f64;
                }
            }
            sum
        })
        .sum();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"queries": q, "candidates": n, "dim": d, "gemm_s": secs,
            "pairs_per_s": (q * n) as f64 / secs, "threads": rayon::current_num_threads(),
            "checksum": checksum + warm as f64})
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: index_bench gen DIR N Q[,Q…] D | index_bench gemm DIR Q";
    match args.get(1).map(String::as_str) {
        Some("gen") if args.len() == 6 => {
            let qs: Vec<usize> = args[4]
                .split(',')
                .map(|x| x.parse().expect(usage))
                .collect();
            generate(
                Path::new(&args[2]),
                args[3].parse().expect(usage),
                &qs,
                args[5].parse().expect(usage),
            );
        }
        Some("gemm") if args.len() == 4 => gemm(Path::new(&args[2]), args[3].parse().expect(usage)),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
