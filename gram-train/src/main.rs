//! `gram-train`: synthetic data, GRAM training, embedding, and the end-to-end demo.

use candle_core::Device;
use clap::{Parser, Subcommand};
use gram_train::config::{LossKind, TrainConfig};
use gram_train::data::synth::SynthConfig;
use gram_train::error::Error;
use gram_train::model::encoders::{EncoderSpec, Kind};
use std::path::PathBuf;
use std::process::ExitCode;

// Candle allocates a fresh buffer for every tensor op; with glibc's allocator the large ones
// are mmap'd and page-faulted in each time (≈ 10 % of a CPU training step). mimalloc reuses them
// (and keeps them: `retain_freed_memory` in main).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gram-train",
    version,
    about = "Train GRAM models on Candle (CPU by default; --features cuda for GPUs)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Device: cpu, cuda or cuda:N (needs a build with --features cuda).
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Training samples (val and test: --n / 8 each, at least 64).
    #[arg(long, default_value_t = 8192)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Size of the latent all modalities share.
    #[arg(long, default_value_t = 4)]
    shared: usize,
    /// Size of each non-anchor modality's private factor (the anchor sees a mixture of them).
    #[arg(long, default_value_t = 12)]
    private: usize,
    /// Size of each modality's own nuisance factor.
    #[arg(long, default_value_t = 8)]
    unique: usize,
    /// Feature noise standard deviation.
    #[arg(long, default_value_t = 0.5)]
    noise: f64,
    /// Hidden tanh layers of each modality's random feature map.
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// Modality names (comma-separated); the first is the anchor.
    #[arg(long, default_value = "text,video,audio", value_delimiter = ',')]
    modalities: Vec<String>,
    /// Feature size per modality (comma-separated, same order).
    #[arg(long, default_value = "384,512,256", value_delimiter = ',')]
    dims: Vec<usize>,
    /// A fraction of samples lacking a modality (not the anchor): their rows are NaN and
    /// dataset.json lists the modality as missing (repeatable).
    #[arg(long = "missing", value_name = "MOD=FRACTION")]
    missing: Vec<String>,
}

impl SynthArgs {
    fn config(&self) -> Result<SynthConfig, Error> {
        let held_out = (self.n / 8).max(64);
        let missing = self
            .missing
            .iter()
            .map(|m| gram_train::data::missing::parse(m, &self.modalities, &self.modalities[0]))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(SynthConfig {
            anchor: self.modalities[0].clone(),
            modalities: self.modalities.clone(),
            dims: self.dims.clone(),
            train: self.n,
            val: held_out,
            test: held_out,
            shared: self.shared,
            private: self.private,
            unique: self.unique,
            noise: self.noise,
            depth: self.depth,
            seed: self.seed,
            missing,
        })
    }
}

#[derive(clap::Args)]
struct TrainArgs {
    /// TOML file with any TrainConfig fields; flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, value_enum)]
    loss: Option<LossKind>,
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    embed_dim: Option<usize>,
    #[arg(long)]
    dam_weight: Option<f64>,
    #[arg(long)]
    eval_every: Option<u64>,
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Write embeddings of --snapshot-split as OUT/snapshots/<step>_<modality>.npy at step 0,
    /// every N steps and at the end, for `gram report --snapshots OUT/snapshots`.
    #[arg(long, value_name = "N")]
    snapshot_every: Option<u64>,
    /// The split the snapshots embed (default: val).
    #[arg(long, value_name = "SPLIT")]
    snapshot_split: Option<String>,
    /// Modalities to train on (comma-separated; default: all in dataset.json).
    #[arg(long, value_delimiter = ',')]
    modalities: Option<Vec<String>>,
    #[arg(long)]
    anchor: Option<String>,
    /// Encoder of a raw-data modality: MODALITY=KIND or MODALITY=KIND:PRETRAINED, KIND one of
    /// bert, clip, siglip, ast, ast-mel, features; PRETRAINED a folder or a Hugging Face model
    /// id ORG/NAME[@REV] from the local Hub cache, never downloaded (repeatable; TOML:
    /// [encoders.MODALITY]).
    #[arg(long = "encoder", value_name = "MODALITY=KIND[:DIR|ORG/NAME]")]
    encoders: Vec<String>,
    /// Modalities whose encoders stay frozen (comma-separated).
    #[arg(long, value_delimiter = ',')]
    freeze: Option<Vec<String>>,
    /// Encoder learning rate as a fraction of --lr.
    #[arg(long)]
    encoder_lr_scale: Option<f64>,
    /// Matmul operands of the encoders and heads: f32, or bf16 (f32 master weights, AdamW
    /// state, volume and loss).
    #[arg(long, value_enum)]
    precision: Option<gram_train::ops::precision::Precision>,
    /// How a sample lacking a modality (dataset.json "missing") is scored by the loss.
    #[arg(long, value_enum)]
    missing: Option<gram_train::config::MissingRule>,
}

fn parse_encoder(arg: &str) -> Result<(String, EncoderSpec), Error> {
    let (modality, rest) = arg
        .split_once('=')
        .ok_or_else(|| Error::config(format!("--encoder {arg}: expected MODALITY=KIND[:DIR]")))?;
    let (kind, path) = match rest.split_once(':') {
        Some((k, p)) => (k, Some(PathBuf::from(p))),
        None => (rest, None),
    };
    let kind = Kind::named(kind).ok_or_else(|| {
        Error::config(format!(
            "--encoder {arg}: unknown kind '{kind}' (bert, clip, siglip, ast, ast-mel, features)"
        ))
    })?;
    let mut spec = EncoderSpec::of(kind);
    spec.path = path;
    Ok((modality.to_string(), spec))
}

impl TrainArgs {
    fn config(&self, base: TrainConfig) -> Result<TrainConfig, Error> {
        let mut c = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                toml::from_str(&text).map_err(|e| Error::config(format!("{}: {e}", p.display())))?
            }
            None => base,
        };
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { c.$f = v; })* };
        }
        set!(
            loss,
            steps,
            batch_size,
            lr,
            seed,
            embed_dim,
            dam_weight,
            eval_every,
            checkpoint_every,
            snapshot_every,
            encoder_lr_scale,
            precision,
            missing
        );
        if let Some(m) = &self.modalities {
            c.modalities = m.clone();
        }
        if let Some(a) = &self.anchor {
            c.anchor = a.clone();
        }
        if let Some(s) = &self.snapshot_split {
            c.snapshot_split = s.clone();
        }
        if let Some(f) = &self.freeze {
            c.frozen = f.clone();
        }
        for e in &self.encoders {
            let (m, spec) = parse_encoder(e)?;
            c.encoders.insert(m, spec);
        }
        c.validate()?;
        Ok(c)
    }
}

/// A checkpoint applied to one split of a dataset (`embed`, `eval`).
#[derive(clap::Args)]
struct SplitArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    /// Raw data: skip and count bad samples instead of failing.
    #[arg(long)]
    skip_bad_samples: bool,
}

#[derive(clap::Args)]
struct FitArgs {
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    train: TrainArgs,
    /// Continue from OUT/state.json exactly where it stopped.
    #[arg(long)]
    resume: bool,
    /// Stop with a checkpoint after this many steps in total (resume later).
    #[arg(long)]
    stop_after: Option<u64>,
    /// Finetune from this checkpoint (every weight; fresh optimizer and schedule).
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Raw data: skip and count bad samples instead of failing.
    #[arg(long)]
    skip_bad_samples: bool,
    /// Batches prepared ahead on a background thread.
    #[arg(long, default_value_t = 2)]
    prefetch: usize,
    #[arg(long)]
    no_progress: bool,
    /// Data parallelism: number of processes (one per GPU; needs --features nccl).
    #[arg(long, default_value_t = 1, env = "WORLD_SIZE")]
    world_size: usize,
    /// This process's rank in 0..world-size (its GPU is --device cuda:N).
    #[arg(long, default_value_t = 0, env = "RANK")]
    rank: usize,
    /// Rendezvous file (on a filesystem all ranks see; must not exist yet) through which
    /// rank 0 hands out NCCL's id.
    #[arg(long)]
    dist_init: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic feature dataset (DESIGN.md format) where joint alignment matters.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        args: SynthArgs,
    },
    /// Train on DIR/train_*.npy, validate on DIR/val_*.npy; checkpoints and metrics.jsonl in OUT.
    Fit(FitArgs),
    /// Retrieval R@1/5/10, MedR, MeanR in both directions by volume; --rerank K re-orders each
    /// query's top K with the DAM head.
    Eval {
        #[command(flatten)]
        on: SplitArgs,
        #[arg(long)]
        rerank: Option<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Generate the tiny raw dataset (PNG shapes, moving-shape frames, WAV tones, captions).
    MakeRaw {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 96)]
        train: usize,
        #[arg(long, default_value_t = 32)]
        val: usize,
        #[arg(long, default_value_t = 32)]
        test: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A fraction of samples whose manifest lines omit a modality (video or audio; repeatable).
        #[arg(long = "missing", value_name = "MOD=FRACTION")]
        missing: Vec<String>,
    },
    /// Write a small randomly initialised encoder (seeded) as a loadable folder.
    InitEncoder {
        /// bert, clip, siglip, ast or ast-mel.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write <modality>.npy unit embeddings of a split, for `gram eval`.
    Embed {
        #[command(flatten)]
        on: SplitArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// The main job: synthetic data, GRAM vs. the pairwise baseline with the same budget, a table.
    Demo {
        #[arg(long, default_value = "gram-demo")]
        out: PathBuf,
        #[command(flatten)]
        train: TrainArgs,
        /// Also train the Symile baseline.
        #[arg(long)]
        with_symile: bool,
        #[arg(long)]
        no_progress: bool,
    },
}

fn device(name: &str) -> Result<Device, Error> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                Error::config(format!("--device {other}: expected cpu, cuda or cuda:N"))
            })?,
    };
    gram_train::device::cuda(ordinal).map_err(|e| Error::device(format!("--device {name}: {e}")))
}

fn gpu_ordinal(dev: &Device) -> usize {
    match dev.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id,
        _ => 0,
    }
}

#[allow(clippy::too_many_arguments)]
#[cfg(feature = "nccl")]
fn fit_data_parallel(
    data: &std::path::Path,
    out: &std::path::Path,
    cfg: &TrainConfig,
    opts: gram_train::train::fit::FitOptions,
    dev: &Device,
    world: usize,
    rank: usize,
    dist_init: Option<PathBuf>,
) -> Result<gram_train::train::fit::FitSummary, Error> {
    let rendezvous =
        dist_init.ok_or_else(|| Error::config("--world-size > 1 needs --dist-init FILE"))?;
    let coll = gram_train::train::nccl::Nccl::join(
        rank,
        world,
        gpu_ordinal(dev),
        &rendezvous,
        std::time::Duration::from_secs(600),
    )?;
    gram_train::train::fit::fit_with(data, out, cfg, opts, dev, &coll)
}

#[allow(clippy::too_many_arguments)]
#[cfg(not(feature = "nccl"))]
fn fit_data_parallel(
    _: &std::path::Path,
    _: &std::path::Path,
    _: &TrainConfig,
    _: gram_train::train::fit::FitOptions,
    dev: &Device,
    world: usize,
    _: usize,
    _: Option<PathBuf>,
) -> Result<gram_train::train::fit::FitSummary, Error> {
    Err(Error::config(format!(
        "--world-size {world}: this gram-train was built without the nccl feature (cargo build --release -p gram-train --features cuda,nccl); device {:?}",
        gpu_ordinal(dev)
    )))
}

/// `gram-train fit`: one process, or one rank of a data-parallel world.
fn run_fit(args: FitArgs, dev: &Device) -> Result<(), Error> {
    let FitArgs {
        data,
        out,
        train,
        resume,
        stop_after,
        init_from,
        skip_bad_samples,
        prefetch,
        no_progress,
        world_size,
        rank,
        dist_init,
    } = args;
    let cfg = train.config(TrainConfig::default())?;
    let opts = gram_train::train::fit::FitOptions {
        resume,
        progress: !no_progress,
        stop_after,
        init_from,
        skip_bad_samples,
        prefetch,
    };
    let s = if world_size > 1 {
        fit_data_parallel(&data, &out, &cfg, opts, dev, world_size, rank, dist_init)?
    } else {
        gram_train::train::fit::fit(&data, &out, &cfg, opts, dev)?
    };
    if rank == 0 {
        println!("{}", serde_json::to_string(&s).expect("json"));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), Error> {
    let dev = device(&cli.device)?;
    match cli.command {
        Command::Synth { out, args } => gram_train::data::synth::generate(&args.config()?, &out),
        Command::Fit(args) => run_fit(args, &dev),
        Command::Embed { on, out } => gram_train::eval::export::embed(
            &on.checkpoint,
            &on.data,
            &on.split,
            on.skip_bad_samples,
            &out,
            &dev,
        ),
        Command::Eval { on, rerank, json } => {
            let e = gram_train::eval::rerank::evaluate_checkpoint(
                &on.checkpoint,
                &on.data,
                &on.split,
                rerank,
                on.skip_bad_samples,
                &dev,
            )?;
            if json {
                println!("{}", e.to_json());
            } else {
                print!("{}", e.table());
            }
            Ok(())
        }
        Command::MakeRaw {
            out,
            train,
            val,
            test,
            seed,
            missing,
        } => {
            let modalities = ["text", "video", "audio"].map(String::from);
            let missing = missing
                .iter()
                .map(|m| gram_train::data::missing::parse(m, &modalities, "text"))
                .collect::<Result<Vec<_>, Error>>()?;
            gram_train::data::rawgen::generate(&out, [train, val, test], seed, &missing)
        }
        Command::InitEncoder { kind, out, seed } => {
            let (_, spec) = parse_encoder(&format!("m={kind}"))?;
            gram_train::model::encoders::write_small(&spec, seed, &out)
        }
        Command::Demo {
            out,
            train,
            with_symile,
            no_progress,
        } => {
            let mut cfg = gram_train::demo::DemoConfig::default();
            cfg.train = train.config(cfg.train)?;
            if with_symile {
                cfg.losses.push(LossKind::Symile);
            }
            let table = gram_train::demo::run(&cfg, &out, !no_progress, &dev)?;
            println!("{table}");
            println!("written to {}/results.md and results.json", out.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    gram_train::process::configure();
    let cli = Cli::parse();
    match gram_train::process::run_on_pool(|| run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
