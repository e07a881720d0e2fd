//! Pretraining-step throughput with encoders: text = MiniLM (all-MiniLM-L6-v2,
//! `scripts/fetch-minilm.sh`) or the small BERT, video = the small CLIP ViT over 4 frames of
//! 32×32, audio = the small log-mel AST (`ast-mel`) over 64 mels × 128 frames; GRAM loss + DAM, all encoders
//! trainable, B = 64 by default. Data: a generated raw dataset (PNG frames, WAV tones,
//! captions) decoded by the real loader on background threads.
//!
//! Reports the median over the timed steps of: waiting for the loader, forward + backward
//! (embed, gather, loss, both backward passes), the optimizer step; and samples/s.
//!
//! Run: `cargo run --release -p gram-benches --bin pretrain_step -- [--steps N] [--batch B]
//!       [--minilm DIR] [--vision small|vit-b16] [--precision f32|bf16] [--device cpu|cuda]` (cuda: build with
//!       `--features cuda`). `--vision vit-b16`: a ViT-B/16-size tower (hidden 768, 12 layers,
//!       12 heads, MLP 3072) at 224×224 with random weights, over the same 4 frames (resized).
//!       `--dam-weight W` (default 0.1), `--freeze text,video,audio`: for memory diagnostics.
//!       `--keep-subnormals`: without flush-to-zero (`gram_train::fp_mode`); `--count-subnormals`:
//!       subnormal values in every CPU GEMM's operands and result (per call site) and in the
//!       parameter gradients, per step on stderr and summed in a table at the end.
//!       `--off-pool`: the training loop on the main thread instead of a rayon worker
//!       (`gram_train::process::run_on_pool`), to measure what that does.

use candle_core::{DType, Device, Var};
use gram_train::config::TrainConfig;
use gram_train::data::source::prefetched;
use gram_train::data::source::{batch_indices, open_source};
use gram_train::model::encoders::{EncoderSpec, Kind};
use gram_train::ops::subnormals::{self, SiteCounts};
use gram_train::train::build::{build_model, model_config_for};
use gram_train::train::distributed::SingleProcess;
use gram_train::train::optim::{AdamW, AdamWConfig};
use gram_train::train::step::{optimizer_params, train_step};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// On CUDA ", device memory used N MiB (pool: U MiB in tensors, R MiB reserved)": the driver's
/// count (total − free) and the device's stream-ordered memory pool, whose used bytes are the
/// live tensors and whose reserved bytes also hold freed memory kept for reuse — so growth in
/// `used` is a leak of ours, growth in `reserved` alone the allocator's caching. Else nothing.
fn device_memory(dev: &Device) -> String {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = dev {
        let ctx = d.cuda_stream().context().clone();
        if let Ok((free, total)) = ctx.mem_get_info() {
            let pool = match gram_train::device::pool_bytes(dev) {
                Some((used, reserved)) => {
                    format!(
                        " (pool: {} MiB in tensors, {} MiB reserved)",
                        used >> 20,
                        reserved >> 20
                    )
                }
                None => String::new(),
            };
            return format!(", device memory used {} MiB{pool}", (total - free) >> 20);
        }
    }
    let _ = dev;
    String::new()
}

/// This process's peak resident memory since the last call, in MiB (Linux: VmHWM, then reset
/// through /proc/self/clear_refs), or None elsewhere.
fn peak_rss_since_last() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    Some(kib >> 10)
}

/// The subnormal probe's counts since the last call, per GEMM call site, on stderr; adds them
/// to `sum`.
fn report_subnormals(step: u64, sum: &mut BTreeMap<String, SiteCounts>) {
    for (site, c) in gram_train::ops::subnormals::take() {
        if c.total() > 0 {
            eprintln!(
                "  step {step}: {site}: {} calls, subnormals in lhs {}, rhs {}, result {}",
                c.calls, c.lhs, c.rhs, c.out
            );
        }
        let s = sum.entry(site).or_default();
        s.calls += c.calls;
        s.flops += c.flops;
        s.lhs += c.lhs;
        s.rhs += c.rhs;
        s.out += c.out;
    }
}

/// Subnormal f32 elements among the gradients, on stderr (with `--count-subnormals`).
fn report_gradient_subnormals(
    step: u64,
    names: &[String],
    vars: &[Var],
    grads: &candle_core::backprop::GradStore,
) -> Result<(), String> {
    let (mut tensors, mut values) = (0, 0u64);
    let mut worst = (0u64, "");
    for (name, v) in names.iter().zip(vars) {
        let Some(g) = grads.get(v.as_tensor()) else {
            continue;
        };
        let g = g
            .flatten_all()
            .and_then(|g| g.to_dtype(DType::F32))
            .and_then(|g| g.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        let n = g.iter().filter(|&&x| subnormals::is_subnormal(x)).count() as u64;
        tensors += (n > 0) as usize;
        values += n;
        if n > worst.0 {
            worst = (n, name);
        }
    }
    eprintln!(
        "  step {step}: parameter gradients: {values} subnormal values in {tensors} tensors (most: {} in {})",
        worst.0, worst.1
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    // --keep-subnormals: the process settings without flush-to-zero (to measure what it does).
    let keep_subnormals = args.iter().any(|a| a == "--keep-subnormals");
    if keep_subnormals {
        gram_train::process::retain_freed_memory();
        gram_train::process::one_cpu_thread_pool();
    } else {
        gram_train::process::configure();
    }
    // --off-pool: the loop on the main thread, outside rayon's pool (to measure `run_on_pool`).
    if args.iter().any(|a| a == "--off-pool") {
        return run(args, keep_subnormals);
    }
    gram_train::process::run_on_pool(|| run(args, keep_subnormals).map_err(|e| e.to_string()))?;
    Ok(())
}

fn run(args: Vec<String>, keep_subnormals: bool) -> Result<(), Box<dyn std::error::Error>> {
    // --count-subnormals: count them in every GEMM's operands and result, and in the gradients.
    let count_subnormals = args.iter().any(|a| a == "--count-subnormals");
    gram_train::ops::subnormals::enable(count_subnormals);
    let mut subnormal_sum = BTreeMap::new();
    let steps: u64 = arg(&args, "--steps").unwrap_or(6);
    let batch: usize = arg(&args, "--batch").unwrap_or(64);
    let device: String = arg(&args, "--device").unwrap_or_else(|| "cpu".into());
    let dev = match device.as_str() {
        "cpu" => Device::Cpu,
        _ => gram_train::device::cuda(0).map_err(|e| e.to_string())?,
    };
    let minilm: PathBuf =
        arg(&args, "--minilm").unwrap_or_else(|| PathBuf::from("target/models/all-MiniLM-L6-v2"));
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = tmp.path().join("raw");
    gram_train::data::rawgen::generate(&data, [4 * batch, batch, batch], 1, &[])?;

    let precision = match arg::<String>(&args, "--precision").as_deref() {
        None | Some("f32") => gram_train::ops::precision::Precision::F32,
        Some("bf16") => gram_train::ops::precision::Precision::Bf16,
        Some(other) => return Err(format!("--precision: expected f32 or bf16, got {other}").into()),
    };
    let vision: String = arg(&args, "--vision").unwrap_or_else(|| "small".into());
    let mut video = EncoderSpec::of(Kind::Clip);
    let video_name = match vision.as_str() {
        "small" => "small CLIP ViT (4 frames of 32×32)",
        "vit-b16" => {
            video.config = serde_json::json!({
                "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                "num_attention_heads": 12, "image_size": 224, "patch_size": 16, "num_channels": 3
            });
            "ViT-B/16 (4 frames of 224×224)"
        }
        other => return Err(format!("--vision: expected small or vit-b16, got {other}").into()),
    };
    let mut text = EncoderSpec::of(Kind::Bert);
    let text_name = if minilm.join("model.safetensors").exists() {
        text.path = Some(minilm.clone());
        "MiniLM-L6 (22.7 M)"
    } else {
        eprintln!("{} not found: using the small BERT", minilm.display());
        "small BERT"
    };
    let cfg = TrainConfig {
        batch_size: batch,
        steps: steps + 2,
        encoders: [
            ("text".to_string(), text),
            ("video".to_string(), video),
            ("audio".to_string(), EncoderSpec::of(Kind::AstMel)),
        ]
        .into_iter()
        .collect(),
        precision,
        dam_weight: arg(&args, "--dam-weight").unwrap_or(0.1),
        frozen: arg::<String>(&args, "--freeze")
            .map(|f| f.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        ..TrainConfig::default()
    };
    let mc = model_config_for(&cfg, &data)?;
    let loaded = build_model(&mc, 0, &dev)?;
    let source = open_source(&data, "train", &mc, &loaded.tokenizers, false)?;
    let params = optimizer_params(&loaded, &cfg);
    let count: usize = params.iter().map(|p| p.1.elem_count()).sum();
    let vars: Vec<Var> = params.iter().map(|p| p.1.clone()).collect();
    let names: Vec<String> = params.iter().map(|p| p.0.clone()).collect();
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        },
    )
    .map_err(|e| e.to_string())?;
    let n = source.len();
    let (mut wait, mut compute, mut update, mut total) = (vec![], vec![], vec![], vec![]);
    let mut t_prev = Instant::now();
    let mut step = 0u64;
    let mut text_len = 0; // tokens per caption after padding (the longest batch's)
    let mut peak_all = peak_rss_since_last().unwrap_or(0);
    let plans = (0..cfg.steps).map(|s| batch_indices(0, s, batch, n));
    prefetched(source.as_ref(), plans, 2, |prepared| {
        let t0 = Instant::now();
        let prepared = prepared.map_err(|e| e.to_string())?;
        for input in &prepared.inputs {
            if let gram_train::model::encoders::HostInput::Tokens(t) = input {
                text_len = text_len.max(t.len);
            }
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step);
        let (loss, grads) = train_step(
            &loaded.model,
            &cfg,
            &prepared,
            &vars,
            &SingleProcess,
            &mut rng,
            &dev,
        )
        .map_err(|e| e.to_string())?;
        if count_subnormals {
            report_subnormals(step, &mut subnormal_sum);
            report_gradient_subnormals(step, &names, &vars, &grads)?;
        }
        let norm = opt.grad_norm(&grads).map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        let peak_step = peak_rss_since_last();
        opt.step(&grads, 1e-4, (1.0 / norm.max(1.0)).min(1.0))
            .map_err(|e| e.to_string())?;
        let _ = loaded
            .model
            .log_inv_tau
            .to_dtype(DType::F64)
            .and_then(|t| t.to_scalar::<f64>())
            .map_err(|e| e.to_string())?; // synchronise
        let t2 = Instant::now();
        drop(grads);
        let peak_update = peak_rss_since_last();
        if step >= 2 {
            wait.push((t0 - t_prev).as_secs_f64());
            compute.push((t1 - t0).as_secs_f64());
            update.push((t2 - t1).as_secs_f64());
            total.push((t2 - t_prev).as_secs_f64());
        }
        let peaks = match (peak_step, peak_update) {
            (Some(a), Some(b)) => {
                peak_all = peak_all.max(a).max(b);
                format!(", peak RSS {a} MiB in forward + backward, {b} MiB in the update")
            }
            _ => String::new(),
        };
        eprintln!(
            "step {step}: loss {loss:.4}, {:.2} s{}{peaks}",
            (t2 - t_prev).as_secs_f64(),
            device_memory(&dev)
        );
        t_prev = t2;
        step += 1;
        Ok::<(), String>(())
    })?;
    if count_subnormals {
        println!(
            "subnormals reaching the GEMMs over all steps (flush-to-zero {}):",
            if keep_subnormals { "off" } else { "on" }
        );
        println!("| call site | GEMM calls | GFLOP | lhs | rhs | result |");
        println!("|---|---|---|---|---|---|");
        for (site, c) in &subnormal_sum {
            println!(
                "| {site} | {} | {:.1} | {} | {} | {} |",
                c.calls,
                c.flops as f64 / 1e9,
                c.lhs,
                c.rhs,
                c.out
            );
        }
    }
    if let Some(last) = peak_rss_since_last() {
        // The whole run's peak (the resets above split it into phases; this is their maximum).
        println!("peak RSS {} MiB", peak_all.max(last));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, c, u, t) = (
        median(&mut wait),
        median(&mut compute),
        median(&mut update),
        median(&mut total),
    );
    println!(
        "device: {dev:?}, precision {precision:?}, B = {batch}, text = {text_name} ({text_len} tokens), video = {video_name}, audio = small AST (64×128 mel), GRAM + DAM, {} trainable parameters, {} timed steps (median)",
        count,
        total.len()
    );
    println!("| samples/s | step (s) | loader wait (s) | forward + backward (s) | optimizer (s) |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} | {:.3} | {:.3} | {:.3} | {:.3} |",
        batch as f64 / t,
        t,
        w,
        c,
        u
    );
    Ok(())
}
