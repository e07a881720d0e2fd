//! Vision: a CLIP ViT vision tower (candle-transformers' `ClipVisionTransformer`, pooled
//! \[CLS\] state after the final LayerNorm) over images or video frames (mean over frames), with
//! CLIP's preprocessing: shorter side resized to `image_size` (bicubic), centre crop, RGB
//! scaled to [0, 1] and normalised with CLIP's per-channel mean and standard deviation.

use super::blocks::{Vit, VitShape, activation_named};
use crate::error::Error;
use candle_core::{D, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

/// The vision tower's shape, with Hugging Face's field names (`vision_config` of a CLIP
/// `config.json`, or the top level of a `CLIPVisionModel` one).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VitConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "three")]
    pub num_channels: usize,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default = "clip_eps")]
    pub layer_norm_eps: f64,
}

fn clip_eps() -> f64 {
    1e-5
}

fn three() -> usize {
    3
}

impl VitConfig {
    /// From a config.json value: its `vision_config` if present, else the top level.
    pub fn from_json(v: &serde_json::Value) -> std::result::Result<VitConfig, Error> {
        let inner = v.get("vision_config").unwrap_or(v);
        serde_json::from_value(inner.clone())
            .map_err(|e| Error::config(format!("CLIP vision config: {e}")))
    }

    pub fn shape(&self) -> Result<VitShape> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            candle_core::bail!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size,
                self.patch_size
            )
        }
        let grid = self.image_size / self.patch_size;
        Ok(VitShape {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            channels: self.num_channels,
            patch: self.patch_size,
            grid_h: grid,
            grid_w: grid,
            act: activation_named(self.hidden_act.as_deref())?,
            eps: self.layer_norm_eps,
        })
    }
}

/// Small random configuration: 32×32 images, 8×8 patches, 2 layers, hidden 128.
pub fn small_config() -> serde_json::Value {
    serde_json::json!({
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "num_channels": 3
    })
}

pub struct VisionEncoder {
    vit: Vit,
    pub hidden: usize,
    pub image_size: usize,
}

impl VisionEncoder {
    /// Parameters under `vb` with HF CLIP vision names (`embeddings.*`, `pre_layrnorm`,
    /// `encoder.layers.*`, `post_layernorm`).
    pub fn new(vb: VarBuilder, cfg: &VitConfig) -> Result<Self> {
        Ok(VisionEncoder {
            vit: Vit::new(vb, &cfg.shape()?)?,
            hidden: cfg.hidden_size,
            image_size: cfg.image_size,
        })
    }

    /// Pooled states [B, hidden] of pixels [B·F, 3, S, S] (F frames per sample, averaged).
    pub fn forward(&self, pixels: &[f32], frames: usize, dev: &Device) -> Result<Tensor> {
        let s = self.image_size;
        let bf = pixels.len() / (3 * s * s);
        let x = Tensor::from_slice(pixels, (bf, 3, s, s), dev)?;
        self.vit
            .forward(&x)?
            .reshape((bf / frames, frames, self.hidden))?
            .mean(D::Minus2)
    }
}

/// CLIP preprocessing of one encoded image file into CHW floats [3, size, size].
pub fn preprocess(bytes: &[u8], size: usize) -> std::result::Result<Vec<f32>, Error> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| Error::decode(format!("cannot decode image: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::decode("image has no pixels"));
    }
    let scale = size as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as usize).max(size),
        ((h as f64 * scale).round() as usize).max(size),
    );
    let resized = img
        .resize_exact(
            nw as u32,
            nh as u32,
            image::imageops::FilterType::CatmullRom,
        )
        .to_rgb8();
    let (x0, y0) = ((nw - size) / 2, (nh - size) / 2);
    let mut out = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let p = resized.get_pixel((x0 + x) as u32, (y0 + y) as u32);
            for c in 0..3 {
                out[(c * size + y) * size + x] = (p[c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
            }
        }
    }
    Ok(out)
}

/// `count` frame indices spread evenly over `available` (repeats when there are fewer).
pub fn sample_frames(available: usize, count: usize) -> Vec<usize> {
    (0..count)
        .map(|i| ((2 * i + 1) * available / (2 * count)).min(available - 1))
        .collect()
}
