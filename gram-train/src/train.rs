//! Model construction, data sources, one training step, embedding and evaluation of a
//! trained model. The configuration is [`crate::config`]; the loop is [`crate::fit`].

use crate::checkpoint;
use crate::config::{LossKind, TrainConfig};
use crate::data::{Split, load_split, read_info};
use crate::distributed::{Collective, step_gradients};
use crate::encoders::{self, EncoderSpec, HostInput, Kind};
use crate::model::{GramModel, ModelConfig, decays};
use crate::raw::{self, Prep, RawSplit};
use crate::source::{Source, prefetched};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use gram_host::cpu::Scorer;
use gram_host::metrics::{Retrieval, evaluate};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

pub(crate) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The model a run trains on `data`: modalities and anchor from `dataset.json` (or the
/// config's override), an encoder per modality for raw datasets (the config's, else BERT for
/// `text`, CLIP for `image`/`video`, AST for `audio`), resolved to concrete architectures.
pub fn model_config_for(cfg: &TrainConfig, data: &Path) -> Result<ModelConfig, String> {
    let dims = if raw::is_raw(data) {
        None
    } else {
        Some(load_split(data, "train")?.dims())
    };
    model_config_with(cfg, data, dims)
}

/// Whether modality `m`'s encoder trains: its spec says so and `frozen` does not list it.
pub(crate) fn trainable(cfg: &TrainConfig, m: &str) -> bool {
    cfg.encoders.get(m).is_none_or(|s| s.trainable) && !cfg.frozen.iter().any(|f| f == m)
}

/// [`model_config_for`] with a feature dataset's dimensions already known (`None` for raw
/// data), so `fit` reads its training split once.
pub(crate) fn model_config_with(
    cfg: &TrainConfig,
    data: &Path,
    feature_dims: Option<Vec<usize>>,
) -> Result<ModelConfig, String> {
    let info = read_info(data)?;
    let modalities = if cfg.modalities.is_empty() {
        info.modalities.clone()
    } else {
        cfg.modalities.clone()
    };
    let anchor = if cfg.anchor.is_empty() {
        info.anchor.clone()
    } else {
        cfg.anchor.clone()
    };
    if modalities.len() < 2 || !modalities.contains(&anchor) {
        return Err(format!(
            "modalities {modalities:?} with anchor '{anchor}': need ≥ 2 modalities including the anchor"
        ));
    }
    let (encoders, input_dims) = if let Some(dims) = feature_dims {
        if modalities != info.modalities {
            return Err(
                "feature datasets train on all their modalities, in dataset.json order".into(),
            );
        }
        (Vec::new(), dims)
    } else {
        let mut specs = Vec::new();
        for m in &modalities {
            let mut spec = match cfg.encoders.get(m) {
                Some(s) => s.clone(),
                None => EncoderSpec::of(match m.as_str() {
                    "text" => Kind::Bert,
                    "image" | "video" => Kind::Clip,
                    "audio" => Kind::Ast,
                    other => {
                        return Err(format!(
                            "modality '{other}' has no default encoder; set [encoders.{other}] kind"
                        ));
                    }
                }),
            };
            spec.resolve()?;
            spec.trainable = trainable(cfg, m);
            specs.push(spec);
        }
        let dims = vec![0; modalities.len()];
        (specs, dims)
    };
    Ok(ModelConfig {
        modalities,
        anchor,
        input_dims,
        embed_dim: cfg.embed_dim,
        mlp_hidden: cfg.mlp_hidden,
        dam_hidden: if cfg.loss == LossKind::Gram && cfg.dam_weight > 0.0 {
            cfg.dam_hidden
        } else {
            0
        },
        init_temperature: cfg.init_temperature,
        encoders,
    })
}

/// A model with its variables and its text encoders' tokenizers.
pub struct Loaded {
    pub model: GramModel,
    pub varmap: VarMap,
    /// Per modality: the tokenizer of a text encoder, else None.
    pub tokenizers: Vec<Option<Tokenizer>>,
}

pub(crate) fn tokenizer_file(dir: &Path, modality: &str) -> PathBuf {
    dir.join(format!("tokenizer-{modality}.json"))
}

/// Tokenizers of `config`'s text encoders: from checkpoint `dir` when given, else from each
/// encoder's pretrained folder, else the character-level one.
pub(crate) fn tokenizers_for(
    config: &ModelConfig,
    dir: Option<&Path>,
) -> Result<Vec<Option<Tokenizer>>, String> {
    (0..config.modalities.len())
        .map(|t| {
            let spec = config.encoder(t);
            if spec.kind != Kind::Bert {
                return Ok(None);
            }
            match dir {
                Some(d) => encoders::tokenizer_from_file(&tokenizer_file(d, &config.modalities[t]))
                    .map(Some),
                None => encoders::load_tokenizer(spec.path.as_deref()).map(Some),
            }
        })
        .collect()
}

/// Build a fresh model: seeded initialisation, then pretrained encoder folders loaded.
pub fn build_model(config: &ModelConfig, seed: u64, dev: &Device) -> Result<Loaded, String> {
    let varmap = VarMap::new();
    let model = GramModel::new(config, &varmap, seed, dev).map_err(err)?;
    for (t, m) in config.modalities.iter().enumerate() {
        if let Some(dir) = &config.encoder(t).path {
            encoders::load_folder(&varmap, &format!("enc.{m}"), dir)?;
        }
    }
    let tokenizers = tokenizers_for(config, None)?;
    Ok(Loaded {
        model,
        varmap,
        tokenizers,
    })
}

/// The batches of split `split` of `data` as `config` consumes them.
pub fn open_source(
    data: &Path,
    split: &str,
    config: &ModelConfig,
    tokenizers: &[Option<Tokenizer>],
    skip_bad: bool,
) -> Result<Box<dyn Source>, String> {
    if raw::is_raw(data) {
        let preps = (0..config.modalities.len())
            .map(|t| Prep::for_spec(&config.encoder(t), tokenizers[t].as_ref()))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Box::new(RawSplit::open(
            data,
            split,
            &config.modalities,
            preps,
            skip_bad,
        )?))
    } else {
        let s = load_split(data, split)?;
        if s.info.modalities != config.modalities || s.dims() != config.input_dims {
            return Err(format!(
                "{}: modalities or feature sizes differ from the model's",
                data.display()
            ));
        }
        Ok(Box::new(s))
    }
}

/// Every variable of `varmap` with its name, sorted by name (a stable parameter order).
pub fn named_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
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

pub(crate) fn set_weights(
    varmap: &VarMap,
    tensors: &std::collections::HashMap<String, Tensor>,
) -> Result<(), String> {
    for (name, var) in named_vars(varmap) {
        let t = tensors
            .get(&name)
            .ok_or_else(|| format!("checkpoint has no tensor {name}"))?;
        if t.shape() != var.shape() {
            return Err(format!(
                "checkpoint tensor {name} has shape {:?}, the model needs {:?}",
                t.dims(),
                var.dims()
            ));
        }
        var.set(&t.to_device(var.device()).map_err(err)?)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Unit embeddings of every (good) sample of `source`, per modality, in chunks without
/// autograd; and the sample indices they belong to.
pub fn embed_source(
    model: &GramModel,
    source: &dyn Source,
    dev: &Device,
) -> Result<(Vec<Vec<f32>>, Vec<usize>), String> {
    let n = source.len();
    let encoded = model
        .config
        .encoders
        .iter()
        .any(|e| e.kind != Kind::Features);
    let chunk = if encoded { 64 } else { 1024 };
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); model.heads.len()];
    let mut kept = Vec::with_capacity(n);
    let plans = (0..n)
        .step_by(chunk)
        .map(|s| (s..(s + chunk).min(n)).collect());
    prefetched(source, plans, 2, |batch| {
        let (inputs, idx) = batch?;
        if idx.is_empty() {
            return Ok(());
        }
        let emb = model.embed(&inputs, dev).map_err(err)?;
        for (o, e) in out.iter_mut().zip(emb) {
            o.extend(
                e.detach()
                    .flatten_all()
                    .and_then(|e| e.to_vec1::<f32>())
                    .map_err(err)?,
            );
        }
        kept.extend(idx);
        Ok::<(), String>(())
    })?;
    Ok((out, kept))
}

/// [`embed_source`] of a feature split (every row).
pub fn embed_split(
    model: &GramModel,
    split: &Split,
    dev: &Device,
) -> Result<Vec<Vec<f32>>, String> {
    Ok(embed_source(model, split, dev)?.0)
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

pub(crate) fn append_jsonl(path: &Path, value: &serde_json::Value) -> Result<(), String> {
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

/// The optimizer's parameters: trainable variables (frozen encoders left out), each with
/// whether it decays and its learning-rate scale.
pub fn optimizer_params(loaded: &Loaded, cfg: &TrainConfig) -> Vec<(String, Var, bool, f64)> {
    let config = &loaded.model.config;
    named_vars(&loaded.varmap)
        .into_iter()
        .filter_map(|(name, var)| {
            let encoder = config
                .modalities
                .iter()
                .position(|m| name.starts_with(&format!("enc.{m}.")));
            let scale = match encoder {
                Some(t) if !config.encoder(t).trainable => return None,
                Some(_) => cfg.encoder_lr_scale,
                None => 1.0,
            };
            let d = decays(&name);
            Some((name, var, d, scale))
        })
        .collect()
}

/// One training step's loss and gradients on a batch of host inputs (this rank's slice when
/// `coll` is a multi-rank world; see [`crate::distributed`]).
pub fn train_step(
    model: &GramModel,
    cfg: &TrainConfig,
    inputs: &[HostInput],
    params: &[Var],
    coll: &dyn Collective,
    rng: &mut ChaCha8Rng,
    dev: &Device,
) -> candle_core::Result<(f64, GradStore)> {
    crate::precision::set(cfg.precision);
    let emb = model.embed(inputs, dev)?;
    step_gradients(model, cfg, &emb, params, coll, rng)
}

/// Load a checkpoint: model (weights included) and tokenizers.
pub fn load_checkpoint(checkpoint: &Path, dev: &Device) -> Result<Loaded, String> {
    let state = checkpoint::load_state(checkpoint)?;
    let varmap = VarMap::new();
    let model = GramModel::new(&state.model, &varmap, 0, dev).map_err(err)?;
    set_weights(
        &varmap,
        &checkpoint::load_tensors(checkpoint, &state.weights, dev)?,
    )?;
    let tokenizers = tokenizers_for(&state.model, Some(checkpoint))?;
    Ok(Loaded {
        model,
        varmap,
        tokenizers,
    })
}

/// Load a checkpoint's model (weights included).
pub fn load_model(checkpoint: &Path, dev: &Device) -> Result<GramModel, String> {
    Ok(load_checkpoint(checkpoint, dev)?.model)
}

/// Write `<modality>.npy` unit embeddings of `split` for `gram eval` (raw datasets: of the
/// samples kept, whose manifest indices go to `indices.npy` when any were skipped).
pub fn embed(
    checkpoint: &Path,
    data: &Path,
    split: &str,
    skip_bad: bool,
    out: &Path,
    dev: &Device,
) -> Result<(), String> {
    let loaded = load_checkpoint(checkpoint, dev)?;
    let model = &loaded.model;
    let source = open_source(data, split, &model.config, &loaded.tokenizers, skip_bad)?;
    let (emb, kept) = embed_source(model, source.as_ref(), dev)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, e) in model.config.modalities.iter().zip(&emb) {
        let p = out.join(format!("{name}.npy"));
        gram_host::output::write_npy_f32(&p, &[kept.len(), model.config.embed_dim], e)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if kept.len() != source.len() {
        let p = out.join("indices.npy");
        let idx: Vec<u32> = kept.iter().map(|&i| i as u32).collect();
        gram_host::output::write_npy_u32(&p, &[idx.len()], &idx)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
