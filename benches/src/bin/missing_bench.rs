//! Missing modalities: retrieval with 30 % of one modality missing, under each
//! `--missing` rule, against the same data complete. Synthetic but structured: a latent z_i
//! per sample, every modality a noisy view of it — text = z + σε₀, video = z + σε₁, audio =
//! W z + σε₂ (W a fixed rotation mixed in, so audio is not just another copy of the same view),
//! rows normalised. Then 30 % of the audio rows become NaN (missing).
//!
//! Run: `cargo run --release -p gram-benches --bin missing_bench -- [N] [D] [σ] [fraction] [seeds]`
//! (defaults 2000 64 0.9 0.3 3). Prints a markdown table of R@1 (text→data, data→text) as
//! mean over seeds, through `gram_host::commands::eval` (the code of `gram eval --missing`).

use gram_host::commands;
use gram_host::missing::MissingRule;
use gram_host::output::write_npy_f32;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn normal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

fn normalise(x: &mut [f32], d: usize) {
    for row in x.chunks_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= n);
    }
}

/// text, video, audio [n, d] and which audio rows are missing.
fn data(n: usize, d: usize, sigma: f32, frac: f64, seed: u64) -> [Vec<f32>; 3] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let z = normal(&mut rng, n * d);
    let w = normal(&mut rng, d * d);
    let view = |rng: &mut ChaCha8Rng, mix: bool| {
        let e = normal(rng, n * d);
        let mut x = vec![0.0f32; n * d];
        for i in 0..n {
            for c in 0..d {
                let base = if mix {
                    // 0.6 z + 0.4 (W z)/√d: correlated with z, yet another direction.
                    let wz: f32 = (0..d).map(|t| w[c * d + t] * z[i * d + t]).sum();
                    0.6 * z[i * d + c] + 0.4 * wz / (d as f32).sqrt()
                } else {
                    z[i * d + c]
                };
                x[i * d + c] = base + sigma * e[i * d + c];
            }
        }
        normalise(&mut x, d);
        x
    };
    let text = view(&mut rng, false);
    let video = view(&mut rng, false);
    let mut audio = view(&mut rng, true);
    let missing = rand::seq::index::sample(&mut rng, n, (frac * n as f64).round() as usize);
    for i in missing {
        audio[i * d..(i + 1) * d].fill(f32::NAN);
    }
    [text, video, audio]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.to_string());
    let n: usize = arg(0, "2000").parse().expect("N");
    let d: usize = arg(1, "64").parse().expect("D");
    let sigma: f32 = arg(2, "0.9").parse().expect("sigma");
    let frac: f64 = arg(3, "0.3").parse().expect("fraction");
    let seeds: u64 = arg(4, "3").parse().expect("seeds");
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let rules = [
        ("complete data (no row missing)", None, "audio_full.npy"),
        (
            "present: volume of the vectors present",
            Some(MissingRule::Present),
            "audio.npy",
        ),
        (
            "scaled: present × median distance of audio",
            Some(MissingRule::Scaled),
            "audio.npy",
        ),
        (
            "mean: mean audio vector as placeholder",
            Some(MissingRule::Mean),
            "audio.npy",
        ),
    ];
    let mut sums = vec![(0.0, 0.0); rules.len()];
    for seed in 0..seeds {
        let [text, video, audio] = data(n, d, sigma, frac, seed);
        let full = data(n, d, sigma, 0.0, seed)[2].clone();
        for (name, x) in [
            ("text.npy", &text),
            ("video.npy", &video),
            ("audio.npy", &audio),
            ("audio_full.npy", &full),
        ] {
            write_npy_f32(&dir.path().join(name), &[n, d], x).unwrap();
        }
        for ((_, rule, audio_file), s) in rules.iter().zip(sums.iter_mut()) {
            let r = commands::eval(
                &p("text.npy"),
                &[p("video.npy"), p(audio_file)],
                *rule,
                Default::default(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            s.0 += r.anchor_to_data.r1 / seeds as f64;
            s.1 += r.data_to_anchor.r1 / seeds as f64;
        }
    }
    println!(
        "N = {n}, D = {d}, σ = {sigma}, {:.0} % of audio rows missing, mean of {seeds} seeds (k = 3: text, video, audio)\n",
        frac * 100.0
    );
    println!("| rule | R@1 text→data | R@1 data→text |\n|---|---|---|");
    for ((name, _, _), (a, b)) in rules.iter().zip(&sums) {
        println!("| {name} | {a:.2} | {b:.2} |");
    }
}
