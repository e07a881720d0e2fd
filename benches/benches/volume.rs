//! Single-volume cost, n = 512, f32 inputs: gram-nostd's exact path, its candidate-precomputed
//! fast path (per anchor: ‖a‖², k−1 dot products, the pair formula), and the published f32
//! Gram-det recipe. Run: `cargo bench -p gram-benches --bench volume`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gram_nostd::{Candidate, dot::dot_f64, dot_f64_rel_err, naive, volume};
use std::hint::black_box;

/// Deterministic unit vectors, so runs compare like with like.
fn unit_vectors(k: usize, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let flat = gram_benches::unit_rows(k, n, seed);
    flat.chunks_exact(n).map(|r| r.to_vec()).collect()
}

fn single_volume(c: &mut Criterion) {
    let n = 512;
    let mut group = c.benchmark_group("single_volume_n512");
    for k in [3usize, 5] {
        let vs = unit_vectors(k, n, 0x9E37_79B9 + k as u64);
        let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
        group.bench_with_input(BenchmarkId::new("exact", k), &refs, |b, r| {
            b.iter(|| volume(black_box(r)).unwrap())
        });
        let cand = Candidate::new(&refs[1..], n).unwrap();
        let eta = dot_f64_rel_err(n);
        group.bench_with_input(BenchmarkId::new("candidate_fast", k), &refs, |b, r| {
            b.iter(|| {
                let a = black_box(r[0]);
                let mut dots = [0.0f64; 16];
                for (d, m) in dots.iter_mut().zip(&r[1..]) {
                    *d = dot_f64(a, 1.0, m, 1.0);
                }
                cand.pair_volume(dot_f64(a, 1.0, a, 1.0), &dots[..k - 1], eta, eta)
            })
        });
        group.bench_with_input(BenchmarkId::new("naive_f32_gram_det", k), &refs, |b, r| {
            b.iter(|| naive::volume_f32(black_box(r)))
        });
    }
    group.finish();
}

criterion_group!(benches, single_volume);
criterion_main!(benches);
