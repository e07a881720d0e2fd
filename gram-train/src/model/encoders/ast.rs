//! Hugging Face's `ASTModel` (Audio Spectrogram Transformer, Gong et al. 2021) over the
//! Kaldi filterbank features of [`super::fbank`]: the architecture and parameter names of
//! `MIT/ast-finetuned-audioset-10-10-0.4593` and the ASTs fine-tuned from it.
//!
//! `input_values` [B, max_length, num_mel_bins] (time first) are read as a one-channel
//! [num_mel_bins, max_length] image; `patch_size`² patches taken every `frequency_stride` bins
//! and `time_stride` frames (they overlap when a stride is below the patch size: 12 × 101
//! patches for the 128 × 1024 input at stride 10), embedded by a linear map with bias (the
//! stride-s convolution), after a \[CLS\] and a distillation token, plus learned positions; a
//! pre-LayerNorm transformer (ViT layout: `layernorm_before`, `attention`, `layernorm_after`,
//! `intermediate`, `output`); final LayerNorm; pooled = the mean of the two tokens' states
//! (`pooler_output`). Parameters under transformers' names (`embeddings.*`, `encoder.layer.N.*`,
//! `layernorm.*`); an `ASTForAudioClassification` checkpoint's `audio_spectrogram_transformer.`
//! prefix is found by the loader, its classifier ignored.

use super::blocks::{Activation, SelfAttention, activation};
use crate::error::Error;
use crate::ops::layer_norm::LayerNorm;
use crate::ops::precision::{Linear, linear, matmul};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{VarBuilder, init::Init};
use serde::{Deserialize, Serialize};

/// An AST's config.json (transformers' `ASTConfig`, its defaults where a field is absent).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AstConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub patch_size: usize,
    pub qkv_bias: bool,
    pub frequency_stride: usize,
    pub time_stride: usize,
    pub max_length: usize,
    pub num_mel_bins: usize,
}

impl Default for AstConfig {
    fn default() -> AstConfig {
        AstConfig {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-12,
            patch_size: 16,
            qkv_bias: true,
            frequency_stride: 10,
            time_stride: 10,
            max_length: 1024,
            num_mel_bins: 128,
        }
    }
}

impl AstConfig {
    pub fn from_json(v: &serde_json::Value) -> std::result::Result<AstConfig, Error> {
        let c: AstConfig = serde_json::from_value(v.clone())
            .map_err(|e| Error::config(format!("AST config: {e}")))?;
        let fits = c.patch_size > 0
            && c.frequency_stride > 0
            && c.time_stride > 0
            && c.num_mel_bins >= c.patch_size
            && c.max_length >= c.patch_size;
        if !fits {
            return Err(Error::config(format!(
                "AST config: patch_size {} with strides {}×{} does not fit {} mel bins × {} frames",
                c.patch_size, c.frequency_stride, c.time_stride, c.num_mel_bins, c.max_length
            )));
        }
        if !c.qkv_bias {
            return Err(Error::config(
                "AST config: qkv_bias = false is not supported (every published AST has the biases)",
            ));
        }
        Ok(c)
    }

    /// Patches along frequency and along time.
    pub fn grid(&self) -> (usize, usize) {
        (
            (self.num_mel_bins - self.patch_size) / self.frequency_stride + 1,
            (self.max_length - self.patch_size) / self.time_stride + 1,
        )
    }

    /// For every patch (frequency-major, as the convolution's output is flattened) and every
    /// weight position (a, b) of it, the flat index of its input value in [max_length,
    /// num_mel_bins]: row (time) j·time_stride + b, column (bin) i·frequency_stride + a.
    fn patch_indices(&self) -> Vec<u32> {
        let (gf, gt) = self.grid();
        let p = self.patch_size;
        let mut idx = Vec::with_capacity(gf * gt * p * p);
        for i in 0..gf {
            for j in 0..gt {
                for a in 0..p {
                    for b in 0..p {
                        let (t, f) = (j * self.time_stride + b, i * self.frequency_stride + a);
                        idx.push((t * self.num_mel_bins + f) as u32);
                    }
                }
            }
        }
        idx
    }
}

/// A small configuration for training from scratch: 64 bins × 128 frames (1.28 s),
/// non-overlapping 16 × 16 patches (4 × 8), 2 layers of width 128.
pub fn small_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "audio-spectrogram-transformer",
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "patch_size": 16, "frequency_stride": 16, "time_stride": 16,
        "num_mel_bins": 64, "max_length": 128, "qkv_bias": true
    })
}

struct AstLayer {
    before: LayerNorm,
    attn: SelfAttention,
    after: LayerNorm,
    inter: Linear,
    out: Linear,
}

pub struct Ast {
    patch_w: Tensor,
    patch_b: Tensor,
    cls: Tensor,
    distillation: Tensor,
    positions: Tensor,
    layers: Vec<AstLayer>,
    final_ln: LayerNorm,
    act: Activation,
    indices: Vec<u32>,
    pub cfg: AstConfig,
}

impl Ast {
    pub fn new(vb: VarBuilder, c: &AstConfig) -> Result<Ast> {
        let (h, eps, p) = (c.hidden_size, c.layer_norm_eps, c.patch_size);
        let (gf, gt) = c.grid();
        let e = vb.pp("embeddings");
        let normal = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                Ok(AstLayer {
                    before: LayerNorm::new(l.pp("layernorm_before"), h, eps)?,
                    attn: SelfAttention::new(
                        &l.pp("attention"),
                        h,
                        c.num_attention_heads,
                        [
                            "attention.query",
                            "attention.key",
                            "attention.value",
                            "output.dense",
                        ],
                    )?,
                    after: LayerNorm::new(l.pp("layernorm_after"), h, eps)?,
                    inter: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                    out: linear(c.intermediate_size, h, l.pp("output.dense"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let proj = e.pp("patch_embeddings.projection");
        Ok(Ast {
            patch_w: proj.get_with_hints((h, 1, p, p), "weight", normal)?,
            patch_b: proj.get_with_hints(h, "bias", Init::Const(0.0))?,
            cls: e.get_with_hints((1, 1, h), "cls_token", normal)?,
            distillation: e.get_with_hints((1, 1, h), "distillation_token", normal)?,
            positions: e.get_with_hints((1, gf * gt + 2, h), "position_embeddings", normal)?,
            layers,
            final_ln: LayerNorm::new(vb.pp("layernorm"), h, eps)?,
            act: activation(&c.hidden_act)?,
            indices: c.patch_indices(),
            cfg: c.clone(),
        })
    }

    /// Pooled states [B, hidden] of `input_values` [B, max_length, num_mel_bins] (row-major,
    /// as [`super::fbank::ast_features`] writes them).
    pub fn forward(&self, input: &[f32], dev: &Device) -> Result<Tensor> {
        let c = &self.cfg;
        let (h, p) = (c.hidden_size, c.patch_size);
        let per = c.max_length * c.num_mel_bins;
        if input.is_empty() || !input.len().is_multiple_of(per) {
            candle_core::bail!("AST input of {} values is not B × {per}", input.len())
        }
        let b = input.len() / per;
        let (gf, gt) = c.grid();
        let n = gf * gt;
        // The strided convolution as a gather of every patch (overlapping ones repeat values)
        // and one matmul with the [hidden, p·p] kernel.
        let idx = Tensor::from_slice(&self.indices, self.indices.len(), dev)?;
        let patches = Tensor::from_slice(input, (b, per), dev)?
            .index_select(&idx, 1)?
            .reshape((b, n, p * p))?;
        let tokens = matmul(&patches, &self.patch_w.reshape((h, p * p))?.t()?)?
            .broadcast_add(&self.patch_b)?;
        let lead = Tensor::cat(&[&self.cls, &self.distillation], 1)?.repeat((b, 1, 1))?;
        let mut x = Tensor::cat(&[lead, tokens], 1)?.broadcast_add(&self.positions)?;
        for l in &self.layers {
            x = (&x + l.attn.forward(&l.before.forward(&x)?, None)?)?;
            let y = l
                .out
                .forward(&self.act.apply(&l.inter.forward(&l.after.forward(&x)?)?)?)?;
            x = (x + y)?;
        }
        let x = self.final_ln.forward(&x)?;
        ((x.narrow(1, 0, 1)? + x.narrow(1, 1, 1)?)? * 0.5)?
            .squeeze(1)?
            .to_dtype(DType::F32)
    }
}
