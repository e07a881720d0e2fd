//! The training loop behind `gram-train fit`, and embedding/evaluation of a trained model.

use crate::checkpoint::{self, CheckpointState};
use crate::data::{Split, load_split};
use crate::losses::{bce_with_logits, gram_loss, pairwise_infonce, sample_hard_negatives, symile};
use crate::model::{GramModel, ModelConfig, decays};
use crate::optim::{AdamW, AdamWConfig, learning_rate};
use crate::volume::volume_matrix;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use gram_host::cpu::Scorer;
use gram_host::metrics::{Retrieval, evaluate};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// GRAM volume contrastive loss (+ DAM when dam_weight > 0).
    Gram,
    /// Anchor-pairwise cosine InfoNCE, summed over modalities.
    Pairwise,
    /// Symile's multilinear inner product with O(N) negatives.
    Symile,
}

/// Everything `fit` needs besides the data; from flags or a TOML file (`--config`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub loss: LossKind,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup: u64,
    /// Final learning rate as a fraction of `lr` (cosine decay target).
    pub final_lr_frac: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub clip: f64,
    pub label_smoothing: f64,
    /// Weight of the DAM loss (GRAM only; 0 disables the head).
    pub dam_weight: f64,
    pub dam_hidden: usize,
    pub embed_dim: usize,
    pub mlp_hidden: usize,
    pub init_temperature: f64,
    pub seed: u64,
    pub log_every: u64,
    /// Validation R@1 every this many steps (0 = only at the end).
    pub eval_every: u64,
    /// Checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            loss: LossKind::Gram,
            steps: 1000,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 0.05,
            warmup: 50,
            final_lr_frac: 0.05,
            clip: 1.0,
            label_smoothing: 0.1,
            dam_weight: 0.1,
            dam_hidden: 256,
            embed_dim: 512,
            mlp_hidden: 0,
            init_temperature: 0.07,
            seed: 0,
            log_every: 10,
            eval_every: 0,
            checkpoint_every: 0,
        }
    }
}

/// What a run ended with.
#[derive(Clone, Debug, Serialize)]
pub struct FitSummary {
    pub steps: u64,
    pub final_loss: f64,
    pub samples_per_s: f64,
    pub val: Option<serde_json::Value>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Build the model (and its VarMap) for a dataset split.
fn build_model(
    cfg: &TrainConfig,
    split: &Split,
    dev: &Device,
) -> Result<(GramModel, VarMap), String> {
    let model_cfg = ModelConfig {
        modalities: split.info.modalities.clone(),
        anchor: split.info.anchor.clone(),
        input_dims: split.dims(),
        embed_dim: cfg.embed_dim,
        mlp_hidden: cfg.mlp_hidden,
        dam_hidden: if cfg.loss == LossKind::Gram && cfg.dam_weight > 0.0 {
            cfg.dam_hidden
        } else {
            0
        },
        init_temperature: cfg.init_temperature,
    };
    let varmap = VarMap::new();
    let model = GramModel::new(&model_cfg, &varmap, cfg.seed, dev).map_err(err)?;
    Ok((model, varmap))
}

fn named_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let mut v: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn set_weights(
    varmap: &VarMap,
    tensors: &std::collections::HashMap<String, Tensor>,
) -> Result<(), String> {
    for (name, var) in named_vars(varmap) {
        let t = tensors
            .get(&name)
            .ok_or_else(|| format!("checkpoint has no tensor {name}"))?;
        var.set(&t.to_device(var.device()).map_err(err)?)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Unit embeddings of every row of `split`, per modality, computed in chunks without autograd.
pub fn embed_split(
    model: &GramModel,
    split: &Split,
    dev: &Device,
) -> Result<Vec<Vec<f32>>, String> {
    let n = split.len();
    let mut out: Vec<Vec<f32>> =
        vec![Vec::with_capacity(n * model.config.embed_dim); split.features.len()];
    for start in (0..n).step_by(1024) {
        let idx: Vec<usize> = (start..(start + 1024).min(n)).collect();
        for (t, head) in model.heads.iter().enumerate() {
            let x = Tensor::from_vec(
                split.gather(t, &idx),
                (idx.len(), split.features[t].cols),
                dev,
            )
            .map_err(err)?;
            let e = head.forward(&x).map_err(err)?.detach();
            out[t].extend(
                e.flatten_all()
                    .map_err(err)?
                    .to_vec1::<f32>()
                    .map_err(err)?,
            );
        }
    }
    Ok(out)
}

/// Retrieval by volume (gram-host's evaluator) of embeddings in `info.modalities` order.
pub fn retrieval(embeddings: &[Vec<f32>], anchor: usize, dim: usize) -> Result<Retrieval, String> {
    let n = embeddings[anchor].len() / dim;
    let others: Vec<&[f32]> = embeddings
        .iter()
        .enumerate()
        .filter(|(t, _)| *t != anchor)
        .map(|(_, e)| e.as_slice())
        .collect();
    let scorer = Scorer::new(&others, n, dim).map_err(err)?;
    evaluate(&scorer, &embeddings[anchor], dim)
        .map(|(r, _)| r)
        .map_err(err)
}

/// The loss of one batch, and the DAM part separately when present.
fn batch_loss(
    model: &GramModel,
    cfg: &TrainConfig,
    emb: &[Tensor],
    rng: &mut ChaCha8Rng,
) -> candle_core::Result<Tensor> {
    let a = model.anchor_index();
    let anchor = &emb[a];
    let others: Vec<Tensor> = emb
        .iter()
        .enumerate()
        .filter(|(t, _)| *t != a)
        .map(|(_, e)| e.clone())
        .collect();
    let inv_tau = model.inv_tau()?;
    match cfg.loss {
        LossKind::Pairwise => pairwise_infonce(anchor, &others, &inv_tau, cfg.label_smoothing),
        LossKind::Symile => {
            let all: Vec<Tensor> = std::iter::once(anchor.clone())
                .chain(others.iter().cloned())
                .collect();
            symile(&all, &inv_tau, cfg.label_smoothing)
        }
        LossKind::Gram => {
            let v = volume_matrix(anchor, &others)?;
            let mut loss = gram_loss(&v, &inv_tau, cfg.label_smoothing)?.loss;
            if let Some(dam) = &model.dam {
                let b = anchor.dim(0)?;
                let vols: Vec<f64> = v.detach().flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
                let mut pairs: Vec<(usize, usize)> = (0..b).map(|i| (i, i)).collect();
                pairs.extend(sample_hard_negatives(&vols, b, rng));
                let dev = anchor.device();
                let ai = Tensor::from_vec(
                    pairs.iter().map(|p| p.0 as u32).collect::<Vec<_>>(),
                    pairs.len(),
                    dev,
                )?;
                let dj = Tensor::from_vec(
                    pairs.iter().map(|p| p.1 as u32).collect::<Vec<_>>(),
                    pairs.len(),
                    dev,
                )?;
                let mut parts = vec![anchor.index_select(&ai, 0)?];
                for o in &others {
                    parts.push(o.index_select(&dj, 0)?);
                }
                let logits = dam.forward(&Tensor::cat(&parts, 1)?)?;
                let targets: Vec<f32> = pairs.iter().map(|p| (p.0 == p.1) as u8 as f32).collect();
                let targets = Tensor::from_vec(targets, pairs.len(), dev)?;
                loss = (loss + (bce_with_logits(&logits, &targets)? * cfg.dam_weight)?)?;
            }
            Ok(loss)
        }
    }
}

/// Batch indices of `step`: epochs are seeded permutations, so any step's batch can be
/// recomputed from (seed, step) alone — which is what makes `--resume` exact.
pub fn batch_indices(seed: u64, step: u64, batch: usize, n: usize) -> Vec<usize> {
    let per_epoch = (n / batch).max(1) as u64;
    let (epoch, pos) = (step / per_epoch, (step % per_epoch) as usize);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut ChaCha8Rng::seed_from_u64(
        seed ^ 0x5eed_0000_0000_0000 ^ epoch,
    ));
    perm.into_iter()
        .cycle()
        .skip(pos * batch)
        .take(batch)
        .collect()
}

fn append_jsonl(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{value}").map_err(|e| format!("{}: {e}", path.display()))
}

pub fn retrieval_json(r: &Retrieval) -> serde_json::Value {
    gram_host::commands::retrieval_json(r)
}

/// How a `fit` call runs (as opposed to what it trains: [`TrainConfig`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct FitOptions {
    /// Continue from `out/state.json` exactly where it stopped.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Stop (with a checkpoint) once this many steps are done in total, before `steps`;
    /// a later `resume` continues on the same schedule.
    pub stop_after: Option<u64>,
}

/// Train on `data/train`, validate on `data/val`, write checkpoints and `metrics.jsonl` to
/// `out`. NaN/Inf in the loss or gradients stops the run before the update, naming the step.
pub fn fit(
    data: &Path,
    out: &Path,
    cfg: &TrainConfig,
    opts: FitOptions,
    dev: &Device,
) -> Result<FitSummary, String> {
    let FitOptions {
        resume,
        progress,
        stop_after,
    } = opts;
    let train = load_split(data, "train")?;
    let val = load_split(data, "val")?;
    if train.len() < 2 || cfg.batch_size < 2 {
        return Err("need at least 2 training samples and batch size ≥ 2".into());
    }
    let batch = cfg.batch_size.min(train.len());
    let (model, varmap) = build_model(cfg, &train, dev)?;
    let params = named_vars(&varmap).into_iter().map(|(name, var)| {
        let d = decays(&name);
        (name, var, d)
    });
    let adam = AdamWConfig {
        lr: cfg.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
    };
    let mut opt = AdamW::new(params.collect(), adam).map_err(err)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut start = 0;
    if resume {
        let state = checkpoint::load_state(out)?;
        if state.model != model.config
            || state.train.seed != cfg.seed
            || state.train.loss != cfg.loss
        {
            return Err(format!(
                "{}: checkpoint was made with a different model, loss or seed",
                checkpoint::state_path(out).display()
            ));
        }
        set_weights(
            &varmap,
            &checkpoint::load_tensors(out, &state.weights, dev)?,
        )?;
        opt.load_state(
            &checkpoint::load_tensors(out, &state.optimizer, dev)?,
            state.adam_t,
        )
        .map_err(err)?;
        start = state.step;
    }
    let metrics_path = out.join("metrics.jsonl");
    let bar = if progress {
        indicatif::ProgressBar::new(cfg.steps)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}] {msg}")
            .expect("template"),
    );
    bar.set_position(start);
    let save = |step: u64, opt: &AdamW| -> Result<(), String> {
        let weights = named_vars(&varmap)
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
    };
    let validate = |step: u64| -> Result<serde_json::Value, String> {
        let emb = embed_split(&model, &val, dev)?;
        let r = retrieval(&emb, model.anchor_index(), model.config.embed_dim)?;
        let v = retrieval_json(&r);
        append_jsonl(&metrics_path, &serde_json::json!({"step": step, "val": v}))?;
        Ok(v)
    };
    let (mut final_loss, mut last_val) = (f64::NAN, None);
    let t0 = Instant::now();
    let mut samples = 0usize;
    let end = stop_after.unwrap_or(cfg.steps).min(cfg.steps);
    for step in start..end {
        let idx = batch_indices(cfg.seed, step, batch, train.len());
        let feats = (0..train.features.len())
            .map(|t| Tensor::from_vec(train.gather(t, &idx), (batch, train.features[t].cols), dev))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(err)?;
        let mut rng =
            ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step);
        let emb = model.embed(&feats).map_err(err)?;
        let loss = batch_loss(&model, cfg, &emb, &mut rng).map_err(err)?;
        let value = loss
            .to_dtype(DType::F64)
            .map_err(err)?
            .to_scalar::<f64>()
            .map_err(err)?;
        let grads = loss.backward().map_err(err)?;
        let norm = opt.grad_norm(&grads).map_err(err)?;
        if !value.is_finite() || !norm.is_finite() {
            bar.abandon();
            return Err(format!(
                "step {step}: loss {value}, gradient norm {norm}; stopped without updating. The last good checkpoint in {} is kept",
                out.display()
            ));
        }
        let lr = learning_rate(step, cfg.lr, cfg.warmup, cfg.steps, cfg.final_lr_frac);
        let scale = if cfg.clip > 0.0 && norm > cfg.clip {
            cfg.clip / norm
        } else {
            1.0
        };
        opt.step(&grads, lr, scale).map_err(err)?;
        final_loss = value;
        samples += batch;
        let rate = samples as f64 / t0.elapsed().as_secs_f64();
        bar.set_message(format!("loss {value:.4} lr {lr:.2e} {rate:.0} samples/s"));
        bar.inc(1);
        let done = step + 1;
        if done % cfg.log_every.max(1) == 0 || done == cfg.steps {
            let tau = 1.0
                / model
                    .inv_tau()
                    .map_err(err)?
                    .to_dtype(DType::F64)
                    .map_err(err)?
                    .to_scalar::<f64>()
                    .map_err(err)?;
            append_jsonl(
                &metrics_path,
                &serde_json::json!({"step": done, "loss": value, "lr": lr, "temperature": tau, "grad_norm": norm, "samples_per_s": rate}),
            )?;
        }
        if cfg.eval_every > 0 && done % cfg.eval_every == 0 && done != cfg.steps {
            let v = validate(done)?;
            bar.println(format!(
                "step {done}: val anchor->data R@1 {:.2}",
                v["anchor_to_data"]["r1"].as_f64().unwrap_or(f64::NAN)
            ));
        }
        if cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0 && done != cfg.steps {
            save(done, &opt)?;
        }
    }
    bar.finish_and_clear();
    if end < cfg.steps {
        save(end, &opt)?;
    } else if start < cfg.steps || !resume {
        last_val = Some(validate(cfg.steps)?);
        save(cfg.steps, &opt)?;
    }
    Ok(FitSummary {
        steps: end,
        final_loss,
        samples_per_s: samples as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        val: last_val,
    })
}

/// Load a checkpoint's model (weights included).
pub fn load_model(checkpoint: &Path, dev: &Device) -> Result<GramModel, String> {
    let state = checkpoint::load_state(checkpoint)?;
    let varmap = VarMap::new();
    let model = GramModel::new(&state.model, &varmap, 0, dev).map_err(err)?;
    set_weights(
        &varmap,
        &checkpoint::load_tensors(checkpoint, &state.weights, dev)?,
    )?;
    Ok(model)
}

/// Write `<modality>.npy` unit embeddings of `split` for `gram eval`.
pub fn embed(
    checkpoint: &Path,
    data: &Path,
    split: &str,
    out: &Path,
    dev: &Device,
) -> Result<(), String> {
    let model = load_model(checkpoint, dev)?;
    let s = load_split(data, split)?;
    if s.info.modalities != model.config.modalities || s.dims() != model.config.input_dims {
        return Err(format!(
            "{}: modalities or feature sizes differ from the checkpoint's",
            data.display()
        ));
    }
    let emb = embed_split(&model, &s, dev)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, e) in model.config.modalities.iter().zip(&emb) {
        let p = out.join(format!("{name}.npy"));
        gram_host::output::write_npy_f32(&p, &[s.len(), model.config.embed_dim], e)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
