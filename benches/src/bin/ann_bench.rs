//! The approximate index against the exact search, on embeddings of a trained model, for
//! `scripts/ann-bench.sh`.
//!
//! - `ann_bench corpus SYNTH CHECKPOINT OUT N Q`: N candidates and Q held-out queries drawn
//!   from the world of the synthetic dataset SYNTH (`gram-train synth`; its synth.json), passed
//!   through the model of CHECKPOINT (`gram-train fit`): `OUT/cand<t>.npy` for each non-anchor
//!   modality t (\[N, D\] unit rows) and `OUT/q.npy` (the anchor's, \[Q, D\]). Written in blocks at
//!   their offsets, never the whole corpus in memory.
//! - `ann_bench search INDEX QUERIES K ROUNDS P:L:R[,…]`: the exact search of every query
//!   (ground truth and the reference speed) and the approximate search at each setting
//!   (probe:low_w:rerank), alternating, ROUNDS times. Per setting: recall@K (mean and 5th
//!   percentile; a hit counts when its volume ≤ the exact K-th), certified share, queries/s
//!   (median and range over rounds), latency p50/p99 (the first 100 queries each searched
//!   alone, all rounds; the batch of all queries is what queries/s measures).
//!   The index is opened (and checked) once, outside the timings. Prints a Markdown table.

use gram_host::commands::Backend;
use gram_host::cpu::topk;
use gram_host::index::{self, Index, ann};
use gram_host::input::{self, View};
use gram_host::output::npy_header_f32;
use gram_train::data::synth::{SynthConfig, World};
use gram_train::model::encoders::HostInput;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Samples per embedding block.
const BLOCK: usize = 8192;

fn corpus(synth: &Path, ckpt: &Path, out: &Path, n: usize, q: usize) {
    let cfg: SynthConfig =
        serde_json::from_str(&std::fs::read_to_string(synth.join("synth.json")).unwrap()).unwrap();
    let (world, _) = World::new(&cfg).unwrap();
    let dev = candle_core::Device::Cpu;
    let loaded = gram_train::train::checkpoint::load_checkpoint(ckpt, &dev).unwrap();
    let model = &loaded.model;
    let mods = &model.config.modalities;
    let anchor = model.anchor_index();
    let d = model.config.embed_dim;
    std::fs::create_dir_all(out).unwrap();
    // Candidate modality files, then the queries; blocks are seeded by (stream, block), apart
    // from the seeds of the training splits.
    let others: Vec<usize> = (0..mods.len()).filter(|&t| t != anchor).collect();
    let create = |name: String, rows: usize| {
        let f = std::fs::File::create(out.join(name)).unwrap();
        let h = npy_header_f32(&[rows, d]);
        f.write_all_at(&h, 0).unwrap();
        f.set_len((h.len() + rows * d * 4) as u64).unwrap();
        (f, h.len())
    };
    let files: Vec<_> = others
        .iter()
        .enumerate()
        .map(|(i, _)| create(format!("cand{i}.npy"), n))
        .collect();
    let query = create("q.npy".into(), q);
    let embed = |stream: u64, b: usize, rows: usize| -> Vec<Vec<f32>> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(cfg.seed ^ (stream << 40) ^ ((b as u64 + 1) * 0x9e37_79b9));
        let feats = world.sample(&mut rng, rows);
        let inputs: Vec<HostInput> = feats
            .into_iter()
            .zip(&cfg.dims)
            .map(|(data, &dim)| HostInput::Features { data, dim })
            .collect();
        model
            .embed(&inputs, &dev)
            .unwrap()
            .iter()
            .map(|e| e.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    };
    let t = Instant::now();
    (0..n.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
        let rows = BLOCK.min(n - b * BLOCK);
        let emb = embed(1, b, rows);
        for ((f, h), &t) in files.iter().zip(&others) {
            f.write_all_at(
                bytemuck::cast_slice(&emb[t]),
                (*h + b * BLOCK * d * 4) as u64,
            )
            .unwrap();
        }
    });
    (0..q.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
        let rows = BLOCK.min(q - b * BLOCK);
        let emb = embed(2, b, rows);
        query
            .0
            .write_all_at(
                bytemuck::cast_slice(&emb[anchor]),
                (query.1 + b * BLOCK * d * 4) as u64,
            )
            .unwrap();
    });
    eprintln!(
        "corpus: {n} candidates, {q} queries, D = {d}, in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// One approximate setting's figures over all rounds.
#[derive(Default)]
struct Figures {
    secs: Vec<f64>,
    latencies: Vec<f64>,
    recall: Vec<f64>,
    certified: usize,
    queries: usize,
    estimated: u64,
    rescored: u64,
}

/// Queries searched one at a time for the latency figures, per setting and round.
const LATENCY_QUERIES: usize = 100;

fn search(dir: &Path, queries: &str, k: usize, rounds: usize, settings: &[ann::ApproxOptions]) {
    let idx = Index::open(&[dir.to_path_buf()]).unwrap();
    let anns = ann::open(&idx).unwrap();
    let q = input::load(queries).unwrap();
    let n1 = q.rows;
    let mut exact_secs = Vec::new();
    let mut truth: Vec<Vec<u64>>;
    let mut figs: Vec<Figures> = settings.iter().map(|_| Figures::default()).collect();
    for round in 0..rounds {
        let t = Instant::now();
        let (keys, _) = index::search_keys(&idx, q.view(), k, Backend::Cpu).unwrap();
        exact_secs.push(t.elapsed().as_secs_f64());
        truth = keys;
        for (opts, f) in settings.iter().zip(&mut figs) {
            let t = Instant::now();
            let (hits, report) = ann::search(&idx, &anns, q.view(), k, *opts).unwrap();
            f.secs.push(t.elapsed().as_secs_f64());
            // Latency: the first LATENCY_QUERIES queries each searched alone (in a batch a
            // query's latency is its batch's).
            let all = q.view();
            for i in 0..n1.min(LATENCY_QUERIES) {
                let one = View {
                    rows: 1,
                    data: &all.data[i * all.cols..(i + 1) * all.cols],
                    ..all
                };
                let t = Instant::now();
                ann::search(&idx, &anns, one, k, *opts).unwrap();
                f.latencies.push(t.elapsed().as_secs_f64());
            }
            if round == 0 {
                f.queries = n1;
                f.estimated = report.estimated;
                f.rescored = report.rescored;
                for (i, row) in hits.keys.iter().enumerate() {
                    let kth = topk::unkey(truth[i][k - 1]).1;
                    let good = row
                        .iter()
                        .filter(|&&x| topk::unkey(x).1 <= kth)
                        .count()
                        .min(k);
                    f.recall.push(good as f64 / k as f64);
                    f.certified += ann::certified(row, k, hits.bound_sq[i]) as usize;
                }
            }
        }
        eprintln!("round {round}: exact {:.2}s", exact_secs[round]);
    }
    let (em, elo, ehi) = gram_benches::median_range(&exact_secs);
    let exact_qps = n1 as f64 / em;
    println!(
        "exact search: {n1} queries, top-{k}: {em:.2}s (range {elo:.2}–{ehi:.2}) = {exact_qps:.1} queries/s"
    );
    println!(
        "| probe | low-w | rerank | recall@{k} mean | p5 | certified | estimated / query | queries/s (range) | × exact | latency p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (o, f) in settings.iter().zip(&mut figs) {
        let (m, lo, hi) = gram_benches::median_range(&f.secs);
        f.recall.sort_by(f64::total_cmp);
        f.latencies.sort_by(f64::total_cmp);
        let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let mean = f.recall.iter().sum::<f64>() / f.recall.len() as f64;
        println!(
            "| {} | {} | {} | {:.4} | {:.2} | {:.1}% | {:.0} | {:.0} ({:.0}–{:.0}) | {:.0}× | {:.3} / {:.3} |",
            o.probe,
            o.low_w,
            o.rerank,
            mean,
            pct(&f.recall, 0.05),
            100.0 * f.certified as f64 / f.queries as f64,
            f.estimated as f64 / f.queries as f64,
            n1 as f64 / m,
            n1 as f64 / hi,
            n1 as f64 / lo,
            (n1 as f64 / m) / exact_qps,
            pct(&f.latencies, 0.5) * 1e3,
            pct(&f.latencies, 0.99) * 1e3,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: ann_bench corpus SYNTH CHECKPOINT OUT N Q | search INDEX QUERIES K ROUNDS P:L:R[,…]";
    match args.get(1).map(String::as_str) {
        Some("corpus") if args.len() == 7 => corpus(
            Path::new(&args[2]),
            Path::new(&args[3]),
            &PathBuf::from(&args[4]),
            args[5].parse().unwrap(),
            args[6].parse().unwrap(),
        ),
        Some("search") if args.len() == 7 => {
            let settings: Vec<ann::ApproxOptions> = args[6]
                .split(',')
                .map(|s| {
                    let v: Vec<usize> = s.split(':').map(|x| x.parse().expect(usage)).collect();
                    ann::ApproxOptions {
                        probe: v[0],
                        low_w: v[1],
                        rerank: v[2],
                    }
                })
                .collect();
            search(
                Path::new(&args[2]),
                &args[3],
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
                &settings,
            )
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
