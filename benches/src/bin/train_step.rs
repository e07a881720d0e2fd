//! Training-step throughput of gram-train: B = 256, input dims 768 per modality,
//! output 512, k = 3, GRAM loss (no DAM), on the CPU (or `--cuda` in a build
//! with the cuda feature). Reports samples/s and the split between forward (embed + volume
//! matrix + loss), backward and the optimizer step; median over the timed steps.
//!
//! `--volume fused|ops|pairs` picks the volume-matrix implementation (default: the device's, see
//! `VolumePath::for_device`).
//!
//! Run: `cargo run --release -p gram-benches --bin train_step -- [steps] [--cuda] [--volume fused|ops|pairs] [--bf16]
//!       [--batch 256] [--in 768,768,768] [--hidden 0] [--out 512] [--loss gram|pairwise]` (the defaults
//!       are the heads-only configuration; the matched CPU comparison with PyTorch: `--in 384,512,256 --hidden 256
//!       --out 64`, against `benches/python/torch_train_step.py` with the same flags).
//! (`--bf16`: the heads' matmuls take bf16 operands, see `gram_train::ops::precision`;
//! `--off-pool`: the loop on the main thread instead of a rayon worker,
//! `gram_train::process::run_on_pool`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use gram_train::model::encoders::HostInput;
use gram_train::model::gram::{GramModel, ModelConfig, decays};
use gram_train::model::losses::{gram_loss, pairwise_infonce};
use gram_train::model::volume::{VolumePath, volume_matrix_with};
use gram_train::train::optim::{AdamW, AdamWConfig};
use std::time::Instant;

// As gram-train's binary: Candle allocates a fresh buffer per tensor op.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: cannot parse {v}"))
        })
        .unwrap_or(default)
}

fn main() -> candle_core::Result<()> {
    gram_train::process::configure();
    // --off-pool: the loop on the main thread, outside rayon's pool (to measure `run_on_pool`).
    if std::env::args().any(|a| a == "--off-pool") {
        return run();
    }
    gram_train::process::run_on_pool(run)
}

fn run() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let b: usize = flag(&args, "--batch", 256);
    let dims: Vec<usize> = flag(&args, "--in", "768,768,768".to_string())
        .split(',')
        .map(|x| x.parse().expect("--in: comma-separated sizes"))
        .collect();
    let out: usize = flag(&args, "--out", 512);
    let hidden: usize = flag(&args, "--hidden", 0);
    let cuda = args.iter().any(|a| a == "--cuda");
    let pairwise = match flag(&args, "--loss", "gram".to_string()).as_str() {
        "gram" => false,
        "pairwise" => true,
        other => candle_core::bail!("--loss: expected gram or pairwise, got {other}"),
    };
    let dev = if cuda {
        gram_train::device::cuda(0)?
    } else {
        Device::Cpu
    };
    if args.iter().any(|a| a == "--bf16") {
        gram_train::ops::precision::set(gram_train::ops::precision::Precision::Bf16);
    }
    let path = match args
        .iter()
        .position(|a| a == "--volume")
        .map(|i| args.get(i + 1))
    {
        None => VolumePath::for_device(&dev),
        Some(Some(p)) if p == "fused" => VolumePath::FusedCpu,
        Some(Some(p)) if p == "ops" => VolumePath::TensorOps,
        Some(Some(p)) if p == "pairs" => VolumePath::CpuPairs,
        Some(other) => candle_core::bail!("--volume: expected fused, ops or pairs, got {other:?}"),
    };
    let cfg = ModelConfig {
        modalities: vec!["text".into(), "video".into(), "audio".into()],
        anchor: "text".into(),
        input_dims: dims.clone(),
        embed_dim: out,
        mlp_hidden: hidden,
        dam_hidden: 0,
        init_temperature: 0.07,
        encoders: Vec::new(),

        placeholders: Vec::new(),
    };
    let varmap = VarMap::new();
    let model = GramModel::new(&cfg, &varmap, 0, &dev)?;
    let mut vars: Vec<_> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), decays(k), 1.0))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = AdamW::new(
        vars,
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
        },
    )?;
    let feats: Vec<HostInput> = dims
        .iter()
        .map(|&dim| {
            Tensor::randn(0f32, 1.0, b * dim, &Device::Cpu)
                .and_then(|t| t.to_vec1::<f32>())
                .map(|data| HostInput::Features { data, dim })
        })
        .collect::<candle_core::Result<_>>()?;
    let (mut fwd, mut bwd, mut opt_t, mut total) = (vec![], vec![], vec![], vec![]);
    for step in 0..steps + 3 {
        let t0 = Instant::now();
        let emb = model.embed(&feats, &dev)?;
        let loss = if pairwise {
            pairwise_infonce(&emb[0], &emb[1..], &model.inv_tau()?, 0.1)?
        } else {
            let v = volume_matrix_with(path, &emb[0], &emb[1..])?;
            gram_loss(&v, &model.inv_tau()?, 0.1)?.loss
        };
        let _ = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?; // synchronise
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let norm = opt.grad_norm(&grads)?; // also synchronises
        let t2 = Instant::now();
        opt.step(&grads, 1e-3, if norm > 1.0 { 1.0 / norm } else { 1.0 })?;
        let _ = model.log_inv_tau.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let t3 = Instant::now();
        if step >= 3 {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            opt_t.push((t3 - t2).as_secs_f64());
            total.push((t3 - t0).as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, bw, o, t) = (
        median(&mut fwd),
        median(&mut bwd),
        median(&mut opt_t),
        median(&mut total),
    );
    println!(
        "device: {dev:?}, volume: {path:?}, matmuls: {:?}, B = {b}, in = {dims:?}, MLP hidden = {hidden}, out = {out}, k = 3, {} loss, {steps} timed steps (median)",
        gram_train::ops::precision::current(),
        if pairwise { "pairwise InfoNCE" } else { "GRAM" }
    );
    println!("| samples/s | step (ms) | forward (ms) | backward (ms) | optimizer (ms) |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
        b as f64 / t,
        t * 1e3,
        f * 1e3,
        bw * 1e3,
        o * 1e3
    );
    Ok(())
}
