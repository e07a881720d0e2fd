//! The training loop behind `gram-train fit`: [`fit_with`] and the steps it is made of —
//! checking the request, building (or finetuning) the model, resuming, one optimizer step,
//! logging, validating, checkpointing.

use crate::config::{MissingRule, TrainConfig};
use crate::data::features::{Split, load_split};
use crate::data::raw;
use crate::data::source::{Complete, HostBatch, Source, open_source, prefetched};
use crate::error::Error;
use crate::model::gram::{GramModel, ModelConfig};
use crate::train::build::{
    Loaded, build_model, model_config_with, named_vars, set_weights, tokenizer_file,
    tokenizers_for, trainable,
};
use crate::train::checkpoint::{self, CheckpointState};
use crate::train::distributed::{Collective, SingleProcess};
use crate::train::embed::{embed_source, retrieval};
use crate::train::optim::{AdamW, AdamWConfig, learning_rate};
use crate::train::snapshots::Snapshots;
use crate::train::step::{optimizer_params, train_step};
use candle_core::{DType, Device, Var};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::time::Instant;

/// What a run ended with.
#[derive(Clone, Debug, Serialize)]
pub struct FitSummary {
    pub steps: u64,
    pub final_loss: f64,
    pub samples_per_s: f64,
    pub val: Option<serde_json::Value>,
    /// Distinct bad samples skipped (train and val), with `--skip-bad-samples`.
    pub skipped_samples: usize,
}

/// How a `fit` call runs (as opposed to what it trains: [`TrainConfig`]).
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Continue from `out/state.json` exactly where it stopped.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Stop (with a checkpoint) once this many steps are done in total, before `steps`;
    /// a later `resume` continues on the same schedule.
    pub stop_after: Option<u64>,
    /// Finetune: start from this checkpoint's model (architecture and every weight: encoders,
    /// heads, temperature, DAM) with a fresh optimizer and this run's schedule.
    pub init_from: Option<PathBuf>,
    /// Raw data: drop undecodable or missing samples (counted) instead of failing.
    pub skip_bad_samples: bool,
    /// Batches prepared ahead on a background thread (0: in line).
    pub prefetch: usize,
}

impl Default for FitOptions {
    fn default() -> FitOptions {
        FitOptions {
            resume: false,
            progress: false,
            stop_after: None,
            init_from: None,
            skip_bad_samples: false,
            prefetch: 2,
        }
    }
}

/// Train on `data`'s train split, validate on its val split, write checkpoints and
/// `metrics.jsonl` to `out`. `data` is a feature dataset or a raw one (JSONL manifests).
/// NaN/Inf in the loss or gradients stops the run before the update, naming the step.
pub fn fit(
    data: &Path,
    out: &Path,
    cfg: &TrainConfig,
    opts: FitOptions,
    dev: &Device,
) -> Result<FitSummary, Error> {
    fit_with(data, out, cfg, opts, dev, &SingleProcess)
}

/// [`fit`] as one rank of a data-parallel world: every rank runs this with the same
/// arguments; each embeds its slice of every global batch (`batch_size` / world), gradients
/// are averaged over ranks (see [`crate::train::distributed`]), and rank 0 alone validates, logs
/// and writes checkpoints. World size 1 is plain [`fit`].
pub fn fit_with(
    data: &Path,
    out: &Path,
    cfg: &TrainConfig,
    opts: FitOptions,
    dev: &Device,
    coll: &dyn Collective,
) -> Result<FitSummary, Error> {
    let (rank, world) = (coll.rank(), coll.world());
    check_request(cfg, &opts, world)?;
    let run = open_run(data, cfg, &opts, world, dev)?;
    let model = &run.loaded.model;
    let (mut opt, vars) = optimizer(&run.loaded, cfg)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let start = if opts.resume {
        resume(out, cfg, &run.loaded, &mut opt, dev)?
    } else {
        0
    };
    let lead = Lead::new(rank == 0, data, out, cfg, &opts, &run, dev)?;
    let bar = progress_bar(opts.progress && rank == 0, cfg.steps, start);
    if start == 0 {
        lead.snapshot(0)?;
    }
    let mut final_loss = f64::NAN;
    let (t0, mut samples) = (Instant::now(), 0usize);
    let end = opts.stop_after.unwrap_or(cfg.steps).min(cfg.steps);
    let (train, local) = (run.train.as_ref(), run.batch / world);
    // Every rank draws the same global batch and takes its own slice of it.
    let plans = (start..end).map(|step| {
        crate::data::source::batch_indices(cfg.seed, step, run.batch, run.n)
            [rank * local..(rank + 1) * local]
            .to_vec()
    });
    let mut step = start;
    prefetched(train, plans, opts.prefetch, |prepared| {
        let batch = prepared?;
        check_batch(step, rank, world, local, batch.kept.len(), train.skipped())?;
        let s = apply_step(model, cfg, &batch, &vars, coll, &mut opt, step, out, dev)
            .inspect_err(|_| bar.abandon())?;
        final_loss = s.loss;
        samples += batch.kept.len() * world;
        let rate = samples as f64 / t0.elapsed().as_secs_f64();
        bar.set_message(format!(
            "loss {:.4} lr {:.2e} {rate:.0} samples/s",
            s.loss, s.lr
        ));
        bar.inc(1);
        step += 1;
        lead.after_step(step, &s, rate, train.skipped(), &opt, &bar)
    })?;
    bar.finish_and_clear();
    let mut last_val = None;
    if end < cfg.steps {
        lead.save(end, &opt)?;
    } else if start < cfg.steps || !opts.resume {
        last_val = Some(lead.validate(cfg.steps)?).filter(|v| !v.is_null());
        lead.save(cfg.steps, &opt)?;
    }
    Ok(FitSummary {
        steps: end,
        final_loss,
        samples_per_s: samples as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        val: last_val,
        skipped_samples: train.skipped() + run.val.skipped(),
    })
}

/// What a run trains: the model (fresh or `--init-from`), its training and validation sources,
/// the number of training samples and the global batch size.
struct Run {
    model_cfg: ModelConfig,
    loaded: Loaded,
    train: Box<dyn Source>,
    val: Box<dyn Source>,
    n: usize,
    batch: usize,
}

/// The run's model and sources, refusing data too small for a batch.
fn open_run(
    data: &Path,
    cfg: &TrainConfig,
    opts: &FitOptions,
    world: usize,
    dev: &Device,
) -> Result<Run, Error> {
    // A feature training split is read once: its dimensions shape the model, then it is the
    // training source.
    let features = if raw::is_raw(data) {
        None
    } else {
        Some(load_split(data, "train")?)
    };
    let (model_cfg, loaded) = run_model(cfg, data, opts, features.as_ref(), dev)?;
    if cfg.missing == MissingRule::Placeholder {
        // A checkpoint trained with another rule (`--init-from`) has no placeholders to learn.
        let info = crate::data::features::read_info(data)?;
        if let Some(m) = info
            .missing
            .iter()
            .find(|m| !model_cfg.placeholders.contains(m))
        {
            return Err(Error::config(format!(
                "--missing placeholder: the model has no placeholder for '{m}' (its checkpoint was trained with another rule); use present, scaled or drop"
            )));
        }
    }
    let (tok, skip) = (&loaded.tokenizers, opts.skip_bad_samples);
    let mut train: Box<dyn Source> = match features {
        Some(split) => Box::new(split),
        None => open_source(data, "train", &model_cfg, tok, skip)?,
    };
    if cfg.missing == MissingRule::Drop {
        train = Box::new(Complete::of(train));
    }
    let val = open_source(data, "val", &model_cfg, tok, skip)?;
    if train.len() < 2 {
        return Err(Error::data(data, "need at least 2 training samples"));
    }
    let (n, batch) = (train.len(), cfg.batch_size.min(train.len()));
    if world > 1 && !batch.is_multiple_of(world) {
        return Err(Error::data(
            data,
            format!("{n} training samples, fewer than a batch divisible by {world} ranks"),
        ));
    }
    Ok(Run {
        model_cfg,
        loaded,
        train,
        val,
        n,
        batch,
    })
}

/// What rank 0 alone does between steps — log, validate, checkpoint, snapshot — so that every
/// rank can call it (on the others each call does nothing).
struct Lead<'a> {
    lead: bool,
    out: &'a Path,
    cfg: &'a TrainConfig,
    run: &'a Run,
    metrics: PathBuf,
    snapshots: Option<Snapshots>,
    dev: &'a Device,
}

impl<'a> Lead<'a> {
    fn new(
        lead: bool,
        data: &Path,
        out: &'a Path,
        cfg: &'a TrainConfig,
        opts: &FitOptions,
        run: &'a Run,
        dev: &'a Device,
    ) -> Result<Lead<'a>, Error> {
        let snapshots = if lead && cfg.snapshot_every > 0 {
            let (tok, skip) = (&run.loaded.tokenizers, opts.skip_bad_samples);
            let source = open_source(data, &cfg.snapshot_split, &run.model_cfg, tok, skip)?;
            Snapshots::new(cfg.snapshot_every, cfg.steps, out, source)
        } else {
            None
        };
        Ok(Lead {
            lead,
            out,
            cfg,
            run,
            metrics: out.join("metrics.jsonl"),
            snapshots,
            dev,
        })
    }

    fn save(&self, step: u64, opt: &AdamW) -> Result<(), Error> {
        if !self.lead {
            return Ok(());
        }
        save_checkpoint(self.out, step, &self.run.loaded, self.cfg, opt)
    }

    fn validate(&self, step: u64) -> Result<serde_json::Value, Error> {
        if !self.lead {
            return Ok(serde_json::Value::Null);
        }
        let model = &self.run.loaded.model;
        validate(model, self.run.val.as_ref(), self.dev, &self.metrics, step)
    }

    fn snapshot(&self, step: u64) -> Result<(), Error> {
        match &self.snapshots {
            Some(s) if s.due(step) => s.write(&self.run.loaded.model, self.dev, step),
            _ => Ok(()),
        }
    }

    /// After step `done` (1-based): the log line, validation, checkpoint and snapshot that
    /// are due (the last step's validation and checkpoint are `fit_with`'s).
    fn after_step(
        &self,
        done: u64,
        s: &StepReport,
        rate: f64,
        skipped: usize,
        opt: &AdamW,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), Error> {
        let cfg = self.cfg;
        if self.lead && (done.is_multiple_of(cfg.log_every.max(1)) || done == cfg.steps) {
            log_step(
                &self.metrics,
                &self.run.loaded.model,
                done,
                s,
                rate,
                skipped,
            )?;
        }
        if self.lead
            && cfg.eval_every > 0
            && done.is_multiple_of(cfg.eval_every)
            && done != cfg.steps
        {
            let v = self.validate(done)?;
            let r1 = v["anchor_to_data"]["r1"].as_f64().unwrap_or(f64::NAN);
            bar.println(format!("step {done}: val anchor->data R@1 {r1:.2}"));
        }
        if cfg.checkpoint_every > 0
            && done.is_multiple_of(cfg.checkpoint_every)
            && done != cfg.steps
        {
            self.save(done, opt)?;
        }
        self.snapshot(done)
    }
}

/// Refuses what no run can do, before any data is read.
fn check_request(cfg: &TrainConfig, opts: &FitOptions, world: usize) -> Result<(), Error> {
    cfg.validate()?;
    if world > 1 && !cfg.batch_size.is_multiple_of(world) {
        return Err(Error::config(format!(
            "batch size {} is not a multiple of the world size {world}",
            cfg.batch_size
        )));
    }
    if opts.resume && opts.init_from.is_some() {
        return Err(Error::config("--resume and --init-from exclude each other"));
    }
    Ok(())
}

/// A batch this rank can train on: data-parallel ranks need equal slices; a single process
/// needs two good samples.
fn check_batch(
    step: u64,
    rank: usize,
    world: usize,
    local: usize,
    kept: usize,
    skipped: usize,
) -> Result<(), Error> {
    if world > 1 && kept != local {
        // Ranks must gather equal slices; skipping cannot be reconciled across them.
        return Err(Error::config(format!(
            "step {step}: rank {rank} has a bad sample; data-parallel runs need clean data (check it with world size 1 and --skip-bad-samples)"
        )));
    }
    if kept < 2 && world == 1 {
        return Err(Error::config(format!(
            "step {step}: fewer than 2 good samples in the batch ({skipped} skipped so far)"
        )));
    }
    Ok(())
}

/// The run's model: fresh from `cfg`, or a checkpoint's (`--init-from`) with this run's
/// choice of which encoders train.
fn run_model(
    cfg: &TrainConfig,
    data: &Path,
    opts: &FitOptions,
    features: Option<&Split>,
    dev: &Device,
) -> Result<(ModelConfig, Loaded), Error> {
    let wanted = model_config_with(cfg, data, features.map(|s| s.dims()))?;
    let Some(ck) = &opts.init_from else {
        let loaded = build_model(&wanted, cfg.seed, dev)?;
        return Ok((wanted, loaded));
    };
    let state = checkpoint::load_state(ck)?;
    let model_cfg = finetune_config(&state.model, wanted, cfg, ck)?;
    let varmap = VarMap::new();
    let model = GramModel::new(&model_cfg, &varmap, 0, dev)?;
    set_weights(&varmap, &checkpoint::load_tensors(ck, &state.weights, dev)?)?;
    let tokenizers = tokenizers_for(&model_cfg, Some(ck))?;
    let loaded = Loaded {
        model,
        varmap,
        tokenizers,
    };
    Ok((model_cfg, loaded))
}

/// The checkpoint's model configuration, checked against this run's data; what may change
/// when finetuning is which encoders train.
fn finetune_config(
    saved: &ModelConfig,
    wanted: ModelConfig,
    cfg: &TrainConfig,
    ck: &Path,
) -> Result<ModelConfig, Error> {
    let mut mc = saved.clone();
    if wanted.modalities != mc.modalities || wanted.anchor != mc.anchor {
        return Err(Error::config(format!(
            "{}: the checkpoint's modalities {:?} (anchor {}) differ from this run's {:?} (anchor {})",
            ck.display(),
            mc.modalities,
            mc.anchor,
            wanted.modalities,
            wanted.anchor
        )));
    }
    if mc.input_dims != wanted.input_dims && mc.encoders.is_empty() {
        return Err(Error::config(format!(
            "{}: the checkpoint's feature sizes {:?} differ from this dataset's {:?}",
            ck.display(),
            mc.input_dims,
            wanted.input_dims
        )));
    }
    for (s, m) in mc.encoders.iter_mut().zip(&wanted.modalities) {
        s.trainable = trainable(cfg, m);
    }
    Ok(mc)
}

/// AdamW over the trainable variables, and those variables in the optimizer's order.
fn optimizer(loaded: &Loaded, cfg: &TrainConfig) -> Result<(AdamW, Vec<Var>), Error> {
    let params = optimizer_params(loaded, cfg);
    let vars: Vec<Var> = params.iter().map(|p| p.1.clone()).collect();
    let adam = AdamWConfig {
        lr: cfg.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
    };
    Ok((AdamW::new(params, adam)?, vars))
}

/// Weights and optimizer state from `out`'s checkpoint (`--resume`); the step it reached.
fn resume(
    out: &Path,
    cfg: &TrainConfig,
    loaded: &Loaded,
    opt: &mut AdamW,
    dev: &Device,
) -> Result<u64, Error> {
    let state = checkpoint::load_state(out)?;
    if state.model != loaded.model.config
        || state.train.seed != cfg.seed
        || state.train.loss != cfg.loss
    {
        return Err(Error::config(format!(
            "{}: checkpoint was made with a different model, loss or seed",
            checkpoint::state_path(out).display()
        )));
    }
    set_weights(
        &loaded.varmap,
        &checkpoint::load_tensors(out, &state.weights, dev)?,
    )?;
    let moments = checkpoint::load_tensors(out, &state.optimizer, dev)?;
    opt.load_state(&moments, state.adam_t)?;
    Ok(state.step)
}

fn progress_bar(visible: bool, steps: u64, start: u64) -> indicatif::ProgressBar {
    let bar = if visible {
        indicatif::ProgressBar::new(steps)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}] {msg}")
            .expect("template"),
    );
    bar.set_position(start);
    bar
}

/// Tokenizers, weights and optimizer state of `step`; state.json, written last, names only
/// complete checkpoints.
fn save_checkpoint(
    out: &Path,
    step: u64,
    loaded: &Loaded,
    cfg: &TrainConfig,
    opt: &AdamW,
) -> Result<(), Error> {
    let model = &loaded.model;
    for (m, tok) in model.config.modalities.iter().zip(&loaded.tokenizers) {
        if let Some(tok) = tok {
            let p = tokenizer_file(out, m);
            let text = tok.to_string(false).map_err(|e| Error::checkpoint(&p, e))?;
            gram_host::output::write_text(&p, &text).map_err(|e| Error::io(&p, e))?;
        }
    }
    let weights = named_vars(&loaded.varmap)
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect();
    let state = CheckpointState {
        step,
        weights: format!("weights-{step:08}.safetensors"),
        optimizer: format!("optimizer-{step:08}.safetensors"),
        adam_t: opt.t,
        train: cfg.clone(),
        model: model.config.clone(),
        rng: format!("chacha8 per step from (seed={}, step)", cfg.seed),
    };
    checkpoint::save(out, &state, &weights, &opt.state_tensors())
}

/// Retrieval on the val split, appended to metrics.jsonl.
fn validate(
    model: &GramModel,
    val: &dyn Source,
    dev: &Device,
    metrics_path: &Path,
    step: u64,
) -> Result<serde_json::Value, Error> {
    let (emb, _) = embed_source(model, val, dev)?;
    let r = retrieval(&emb, model.anchor_index(), model.config.embed_dim)?;
    let v = r.to_json();
    append_jsonl(metrics_path, &serde_json::json!({"step": step, "val": v}))?;
    Ok(v)
}

/// What one optimizer step did.
struct StepReport {
    loss: f64,
    grad_norm: f64,
    lr: f64,
}

/// Loss, gradients (averaged over `coll`), the finiteness check, clipping and the AdamW
/// update of step `step`. Stops before updating when the loss or gradient norm is not finite
/// (the checkpoints in `out` are then the last good ones).
#[allow(clippy::too_many_arguments)]
fn apply_step(
    model: &GramModel,
    cfg: &TrainConfig,
    batch: &HostBatch,
    vars: &[Var],
    coll: &dyn Collective,
    opt: &mut AdamW,
    step: u64,
    out: &Path,
    dev: &Device,
) -> Result<StepReport, Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step);
    let (loss, grads) = train_step(model, cfg, batch, vars, coll, &mut rng, dev)?;
    let grad_norm = opt.grad_norm(&grads)?;
    if !loss.is_finite() || !grad_norm.is_finite() {
        return Err(Error::Diverged {
            step,
            message: format!(
                "loss {loss}, gradient norm {grad_norm}; stopped without updating. The last good checkpoint in {} is kept",
                out.display()
            ),
        });
    }
    let lr = learning_rate(step, cfg.lr, cfg.warmup, cfg.steps, cfg.final_lr_frac);
    let scale = if cfg.clip > 0.0 && grad_norm > cfg.clip {
        cfg.clip / grad_norm
    } else {
        1.0
    };
    opt.step(&grads, lr, scale)?;
    Ok(StepReport {
        loss,
        grad_norm,
        lr,
    })
}

/// One line of metrics.jsonl for step `done`.
fn log_step(
    metrics_path: &Path,
    model: &GramModel,
    done: u64,
    s: &StepReport,
    rate: f64,
    skipped: usize,
) -> Result<(), Error> {
    let inv_tau = model.inv_tau().and_then(|t| t.to_dtype(DType::F64));
    let tau = 1.0 / inv_tau.and_then(|t| t.to_scalar::<f64>())?;
    append_jsonl(
        metrics_path,
        &serde_json::json!({"step": done, "loss": s.loss, "lr": s.lr, "temperature": tau, "grad_norm": s.grad_norm, "samples_per_s": rate, "skipped_samples": skipped}),
    )
}

pub(crate) fn append_jsonl(path: &Path, value: &serde_json::Value) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{value}").map_err(|e| Error::io(path, e))
}
