//! Model construction: the model a training configuration asks for on a dataset, built fresh
//! (seeded, pretrained encoder folders loaded) with its tokenizers; weights set by name.

use crate::config::{LossKind, MissingRule, TrainConfig};
use crate::data::features::{load_split, read_info};
use crate::data::raw;
use crate::error::Error;
use crate::model::encoders::{self, EncoderSpec, Kind};
use crate::model::gram::{GramModel, ModelConfig};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The model a run trains on `data`: modalities and anchor from `dataset.json` (or the
/// config's override), an encoder per modality for raw datasets (the config's, else BERT for
/// `text`, CLIP for `image`/`video`, AST for `audio`), resolved to concrete architectures.
pub fn model_config_for(cfg: &TrainConfig, data: &Path) -> Result<ModelConfig, Error> {
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
) -> Result<ModelConfig, Error> {
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
        return Err(Error::config(format!(
            "modalities {modalities:?} with anchor '{anchor}': need ≥ 2 modalities including the anchor"
        )));
    }
    let (encoders, input_dims) = if let Some(dims) = feature_dims {
        if modalities != info.modalities {
            return Err(Error::config(
                "feature datasets train on all their modalities, in dataset.json order",
            ));
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
                    // From scratch the log-mel AST needs no dataset statistics; a pretrained
                    // Hugging Face AST is asked for by name (`--encoder audio=ast:…`).
                    "audio" => Kind::AstMel,
                    other => {
                        return Err(Error::config(format!(
                            "modality '{other}' has no default encoder; set [encoders.{other}] kind"
                        )));
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
        placeholders: if cfg.missing == MissingRule::Placeholder {
            info.missing.clone()
        } else {
            Vec::new()
        },
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
) -> Result<Vec<Option<Tokenizer>>, Error> {
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
pub fn build_model(config: &ModelConfig, seed: u64, dev: &Device) -> Result<Loaded, Error> {
    let varmap = VarMap::new();
    let model = GramModel::new(config, &varmap, seed, dev)?;
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
) -> Result<(), Error> {
    for (name, var) in named_vars(varmap) {
        let t = tensors
            .get(&name)
            .ok_or_else(|| Error::config(format!("checkpoint has no tensor {name}")))?;
        if t.shape() != var.shape() {
            return Err(Error::config(format!(
                "checkpoint tensor {name} has shape {:?}, the model needs {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_device(var.device())?)
            .map_err(|e| Error::config(format!("{name}: {e}")))?;
    }
    Ok(())
}
