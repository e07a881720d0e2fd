//! Modality encoders in front of the projection heads: BERT-family text ([`text`]), a CLIP or
//! SigLIP ViT over images or video frames ([`vision`]), Hugging Face's Audio Spectrogram
//! Transformer over Kaldi filterbanks ([`ast`], [`fbank`]) or an AST-style transformer over
//! log-mel spectrograms ([`audio`]), or nothing (pre-computed features).
//!
//! An [`EncoderSpec`] says which, with which architecture (`config`, a Hugging Face style
//! config.json value) and whether it trains. Parameters live in the model's `VarMap` under
//! `enc.<modality>.` with the upstream (Hugging Face) names, so a pretrained folder
//! (`config.json` + `*.safetensors` [+ `tokenizer.json`] [+ `preprocessor_config.json`]) loads
//! by name and [`save_folder`] writes one back. The preprocessor's settings (image size, mean
//! and std; the audio extractor's statistics) come from the folder's `preprocessor_config.json`
//! as transformers' processors read them. With no folder, the small configuration of each kind is initialised from
//! the run's seed (BERT's recipe: N(0, 0.02) weights, unit LayerNorm scales, zero biases).

pub mod ast;
pub mod audio;
pub mod blocks;
pub mod fbank;
pub mod hub;
pub mod jpeg;
pub mod pillow;
pub mod text;
pub mod vision;
pub mod wav;

use crate::error::Error;
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Pre-computed feature vectors (a feature dataset's `.npy` rows).
    #[default]
    Features,
    /// BERT-family text encoder (MiniLM, BERT-base, …).
    Bert,
    /// CLIP ViT vision tower, one image or the mean over video frames.
    Clip,
    /// SigLIP ViT vision tower (attention-pooling head), one image or the mean over frames.
    Siglip,
    /// Hugging Face's Audio Spectrogram Transformer (`ASTModel`) over Kaldi filterbanks.
    Ast,
    /// AST-style patch transformer over a Whisper-style log-mel spectrogram.
    #[serde(rename = "ast-mel")]
    AstMel,
}

impl Kind {
    /// The kind a `--encoder MODALITY=KIND` names.
    pub fn named(name: &str) -> Option<Kind> {
        Some(match name {
            "bert" => Kind::Bert,
            "clip" => Kind::Clip,
            "siglip" => Kind::Siglip,
            "ast" => Kind::Ast,
            "ast-mel" => Kind::AstMel,
            "features" => Kind::Features,
            _ => return None,
        })
    }

    /// Image or video frames.
    pub fn is_vision(self) -> bool {
        matches!(self, Kind::Clip | Kind::Siglip)
    }

    /// Audio.
    pub fn is_audio(self) -> bool {
        matches!(self, Kind::Ast | Kind::AstMel)
    }
}

/// One modality's encoder: what `fit` is told (kind, optional pretrained `path`, trainable)
/// and, once resolved, the architecture it was built with (saved in every checkpoint).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderSpec {
    pub kind: Kind,
    /// Pretrained folder to initialise from (config.json + *.safetensors [+ tokenizer.json]),
    /// or a Hugging Face model id (`ORG/NAME[@REVISION]`) found in the local Hub cache
    /// ([`hub::resolve_folder`]; resolved to its folder by [`EncoderSpec::resolve`]).
    pub path: Option<PathBuf>,
    /// Architecture (config.json content); filled from `path` or the small default.
    pub config: serde_json::Value,
    /// The folder's preprocessor_config.json (image or audio preprocessing), `Null` when it
    /// has none: the kind's defaults then.
    pub preprocessor: serde_json::Value,
    /// Trainable (at `lr × encoder_lr_scale`) or frozen.
    pub trainable: bool,
    /// Text pooling.
    pub pooling: text::Pooling,
    /// Text: maximum tokens per sample.
    pub max_len: usize,
    /// Video: frames sampled per clip (evenly spaced).
    pub frames: usize,
}

impl Default for EncoderSpec {
    fn default() -> EncoderSpec {
        EncoderSpec {
            kind: Kind::Features,
            path: None,
            config: serde_json::Value::Null,
            preprocessor: serde_json::Value::Null,
            trainable: true,
            pooling: text::Pooling::Mean,
            max_len: 64,
            frames: 4,
        }
    }
}

impl EncoderSpec {
    pub fn of(kind: Kind) -> EncoderSpec {
        EncoderSpec {
            kind,
            ..EncoderSpec::default()
        }
    }

    /// Fill `config` (and `preprocessor`) from `path/config.json` (and
    /// `path/preprocessor_config.json` when present), or the kind's small configuration.
    pub fn resolve(&mut self) -> std::result::Result<(), Error> {
        if !self.config.is_null() || self.kind == Kind::Features {
            return Ok(());
        }
        // A model id (`ORG/NAME[@REV]`) becomes its folder in the local Hub cache.
        if let Some(p) = &self.path {
            self.path = Some(hub::resolve_folder(p)?);
        }
        self.config = match &self.path {
            Some(dir) => {
                let pre = dir.join("preprocessor_config.json");
                if pre.is_file() {
                    self.preprocessor = read_json(&pre)?;
                }
                read_json(&dir.join("config.json"))?
            }
            None => match self.kind {
                Kind::Bert => text::small_config(),
                Kind::Clip => vision::small_config(),
                Kind::Siglip => vision::small_siglip_config(),
                Kind::Ast => ast::small_config(),
                Kind::AstMel => audio::small_config(),
                Kind::Features => unreachable!("handled above"),
            },
        };
        Ok(())
    }
}

fn read_json(p: &Path) -> std::result::Result<serde_json::Value, Error> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| Error::checkpoint(p, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::checkpoint(p, e))
}

/// A batch of one modality, prepared on the host (by the data loader's threads).
#[derive(Clone, Debug)]
pub enum HostInput {
    /// Rows [B, dim].
    Features {
        data: Vec<f32>,
        dim: usize,
    },
    Tokens(text::Tokens),
    /// CHW pixels of B·frames images.
    Pixels {
        data: Vec<f32>,
        frames: usize,
    },
    /// Audio features of B clips ([`audio::AudioArch::features`]).
    Mel(Vec<f32>),
}

pub enum Encoder {
    Features { dim: usize },
    Text(text::TextEncoder),
    Vision(vision::VisionEncoder),
    Audio(audio::AudioEncoder),
}

impl Encoder {
    /// Build the encoder of `spec` (resolved) with parameters under `vb`; `features_dim` is
    /// the input size of a feature modality.
    pub fn new(spec: &EncoderSpec, vb: VarBuilder, features_dim: usize) -> Result<Encoder> {
        let msg = |e: Error| candle_core::Error::Msg(e.to_string());
        Ok(match spec.kind {
            Kind::Features => Encoder::Features { dim: features_dim },
            Kind::Bert => Encoder::Text(text::TextEncoder::new(vb, &spec.config, spec.pooling)?),
            Kind::Clip | Kind::Siglip => Encoder::Vision(vision::VisionEncoder::new(
                vb,
                &vision::VitConfig::from_json(&spec.config, vision::Family::of(spec.kind))
                    .map_err(msg)?,
                vision::Family::of(spec.kind),
            )?),
            Kind::Ast | Kind::AstMel => Encoder::Audio(audio::AudioEncoder::new(
                vb,
                &audio::AudioArch::of(&spec.config, &spec.preprocessor).map_err(msg)?,
            )?),
        })
    }

    /// Output size (the projection head's input size).
    pub fn hidden(&self) -> usize {
        match self {
            Encoder::Features { dim } => *dim,
            Encoder::Text(e) => e.hidden,
            Encoder::Vision(e) => e.hidden,
            Encoder::Audio(e) => e.hidden(),
        }
    }

    /// States [B, hidden] of a host batch.
    pub fn forward(&self, input: &HostInput, dev: &Device) -> Result<Tensor> {
        match (self, input) {
            (Encoder::Features { dim }, HostInput::Features { data, dim: d }) if d == dim => {
                Tensor::from_slice(data, (data.len() / dim, *dim), dev)
            }
            (Encoder::Text(e), HostInput::Tokens(t)) => e.forward(t, dev),
            (Encoder::Vision(e), HostInput::Pixels { data, frames }) => {
                e.forward(data, *frames, dev)
            }
            (Encoder::Audio(e), HostInput::Mel(m)) => e.forward(m, dev),
            _ => candle_core::bail!("encoder and input kinds differ"),
        }
    }
}

/// Variables under `prefix.`, sorted by name.
pub fn vars_under(varmap: &VarMap, prefix: &str) -> Vec<(String, Var)> {
    let p = format!("{prefix}.");
    let mut v: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .filter(|(k, _)| k.starts_with(&p))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Re-initialise every variable under `prefix` from `seed` (candle's own initialisers cannot be
/// seeded): 1-D `…weight` (LayerNorm scales) → 1, `…bias` → 0, everything else N(0, 0.02).
pub fn seeded_init(varmap: &VarMap, prefix: &str, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xE5C0_DE00);
    let normal = Normal::new(0.0f32, 0.02).expect("valid");
    for (name, var) in vars_under(varmap, prefix) {
        let shape = var.shape().clone();
        let t = if name.ends_with("bias") {
            Tensor::zeros(&shape, DType::F32, var.device())?
        } else if name.ends_with("weight") && shape.rank() == 1 {
            Tensor::ones(&shape, DType::F32, var.device())?
        } else {
            let v: Vec<f32> = (0..shape.elem_count())
                .map(|_| normal.sample(&mut rng))
                .collect();
            Tensor::from_vec(v, &shape, var.device())?
        };
        var.set(&t)?;
    }
    Ok(())
}

/// Upstream checkpoints prefix their tensors with the model's name; these are tried in turn.
const UPSTREAM_PREFIXES: [&str; 5] = [
    "",
    "bert.",
    "vision_model.",
    "model.",
    "audio_spectrogram_transformer.",
];

/// Load every variable under `prefix` from the `*.safetensors` files of `dir`, by upstream
/// name. Fails naming the missing tensor or the shape mismatch; extra tensors are ignored.
pub fn load_folder(varmap: &VarMap, prefix: &str, dir: &Path) -> std::result::Result<(), Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::checkpoint(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::checkpoint(dir, "no .safetensors file"));
    }
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for f in &files {
        tensors.extend(
            candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| Error::checkpoint(f, e))?,
        );
    }
    for (name, var) in vars_under(varmap, prefix) {
        let key = &name[prefix.len() + 1..];
        let found = UPSTREAM_PREFIXES
            .iter()
            .find_map(|p| tensors.get(&format!("{p}{key}")))
            .ok_or_else(|| Error::checkpoint(dir, format!("no tensor {key}")))?;
        if found.shape() != var.shape() {
            return Err(Error::checkpoint(
                dir,
                format!(
                    "tensor {key} has shape {:?}, the configuration needs {:?}",
                    found.dims(),
                    var.dims()
                ),
            ));
        }
        let t = found
            .to_dtype(DType::F32)
            .and_then(|t| t.to_device(var.device()))?;
        var.set(&t)?;
    }
    Ok(())
}

/// Write the encoder under `prefix` as a loadable folder: config.json, model.safetensors
/// (upstream names), preprocessor_config.json when the spec has one and, for text,
/// tokenizer.json.
pub fn save_folder(
    varmap: &VarMap,
    prefix: &str,
    spec: &EncoderSpec,
    tokenizer: Option<&Tokenizer>,
    dir: &Path,
) -> std::result::Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::checkpoint(dir, e))?;
    let tensors: HashMap<String, Tensor> = vars_under(varmap, prefix)
        .into_iter()
        .map(|(k, v)| (k[prefix.len() + 1..].to_string(), v.as_tensor().clone()))
        .collect();
    let p = dir.join("model.safetensors");
    let tmp = dir.join("model.safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp).map_err(|e| Error::checkpoint(&p, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::checkpoint(&p, e))?;
    let config = serde_json::to_string_pretty(&spec.config).expect("json");
    gram_host::output::write_text(&dir.join("config.json"), &config)
        .map_err(|e| Error::checkpoint(dir, e))?;
    if !spec.preprocessor.is_null() {
        let pre = serde_json::to_string_pretty(&spec.preprocessor).expect("json");
        gram_host::output::write_text(&dir.join("preprocessor_config.json"), &pre)
            .map_err(|e| Error::checkpoint(dir, e))?;
    }
    if let Some(t) = tokenizer {
        let text = t
            .to_string(true)
            .map_err(|e| Error::config(format!("tokenizer: {e}")))?;
        gram_host::output::write_text(&dir.join("tokenizer.json"), &text)
            .map_err(|e| Error::checkpoint(dir, e))?;
    }
    Ok(())
}

/// The tokenizer of a text encoder: `dir/tokenizer.json` when given, else the character-level
/// one the small configuration is built for.
pub fn load_tokenizer(dir: Option<&Path>) -> std::result::Result<Tokenizer, Error> {
    match dir {
        Some(d) => tokenizer_from_file(&d.join("tokenizer.json")),
        None => text::char_tokenizer(),
    }
}

/// A tokenizer.json with its own padding and truncation switched off: [`text::tokenize`]
/// truncates to the spec's `max_len` and pads to the batch (MiniLM's file pads every
/// sequence to 128, which would change nothing but the cost).
pub fn tokenizer_from_file(p: &Path) -> std::result::Result<Tokenizer, Error> {
    let mut t = Tokenizer::from_file(p).map_err(|e| Error::checkpoint(p, e))?;
    t.with_padding(None);
    t.with_truncation(None)
        .map_err(|e| Error::checkpoint(p, e))?;
    Ok(t)
}

/// Write the small configuration of `spec.kind`, initialised from `seed`, as a folder that
/// `--encoder MODALITY=KIND:DIR` loads back.
pub fn write_small(spec: &EncoderSpec, seed: u64, dir: &Path) -> std::result::Result<(), Error> {
    if spec.kind == Kind::Features {
        return Err(Error::config("features have no encoder to write"));
    }
    let mut spec = spec.clone();
    spec.path = None;
    spec.resolve()?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu).pp("enc");
    Encoder::new(&spec, vb, 0)?;
    seeded_init(&varmap, "enc", seed)?;
    let tok = match spec.kind {
        Kind::Bert => Some(text::char_tokenizer()?),
        _ => None,
    };
    save_folder(&varmap, "enc", &spec, tok.as_ref(), dir)
}
