//! Vision: a CLIP or SigLIP ViT vision tower over images or video frames (mean over frames),
//! with the preprocessing of transformers' `CLIPImageProcessor` / `SiglipImageProcessor`.
//!
//! CLIP: pooled \[CLS\] state after the final LayerNorm. SigLIP: no \[CLS\], every token
//! LayerNorm'd, then the multi-head attention pooling head ([`super::blocks`]).
//!
//! Preprocessing ([`ImagePrep`], from the folder's `preprocessor_config.json` or the family's
//! defaults): RGB (alpha dropped, grey replicated, as Pillow's `convert("RGB")`); resized with
//! Pillow's own algorithm ([`super::pillow`]), CLIP: the shorter side to `shortest_edge` (the
//! longer ⌊·⌋ by the aspect ratio) then a centre crop, SigLIP: straight to height × width;
//! scaled by 1/255 and normalised per channel. PNG and JPEG decode to Pillow's pixels exactly
//! (JPEG through libjpeg-turbo's decoder, [`super::jpeg`]), so the result equals the
//! processors' to f32 rounding (tests/hf_parity.rs, on real photos).

use super::Kind;
use super::blocks::{Vit, VitFamily, VitShape, activation};
use super::pillow::{self, Filter};
use crate::error::Error;
use candle_core::{D, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

/// Which tower (and which processor's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Clip,
    Siglip,
}

impl Family {
    pub fn of(kind: Kind) -> Family {
        if kind == Kind::Siglip {
            Family::Siglip
        } else {
            Family::Clip
        }
    }
}

/// The vision tower's shape, with Hugging Face's field names (`vision_config` of a CLIP or
/// SigLIP `config.json`, or the top level of a `CLIPVisionModel` / `SiglipVisionModel` one).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VitConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    /// SigLIP's attention pooling head (without it there is no pooled output to train on).
    pub vision_use_head: bool,
}

impl VitConfig {
    /// From a config.json value: its `vision_config` if present, else the top level; a field
    /// it lacks takes the family's transformers default (`CLIPVisionConfig()`,
    /// `SiglipVisionConfig()`), as transformers reads the Hub's often minimal files.
    pub fn from_json(
        v: &serde_json::Value,
        family: Family,
    ) -> std::result::Result<VitConfig, Error> {
        let inner = v.get("vision_config").unwrap_or(v);
        let mut merged = match family {
            Family::Clip => serde_json::json!({
                "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                "num_attention_heads": 12, "image_size": 224, "patch_size": 32,
                "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
            }),
            Family::Siglip => serde_json::json!({
                "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                "num_attention_heads": 12, "image_size": 224, "patch_size": 16,
                "num_channels": 3, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
            }),
        };
        merged["vision_use_head"] = true.into();
        let fields = [
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "image_size",
            "patch_size",
            "num_channels",
            "hidden_act",
            "layer_norm_eps",
            "vision_use_head",
        ];
        for f in fields {
            if let Some(x) = inner.get(f).filter(|x| !x.is_null()) {
                merged[f] = x.clone();
            }
        }
        serde_json::from_value(merged)
            .map_err(|e| Error::config(format!("vision tower config: {e}")))
    }

    pub fn shape(&self, family: Family) -> Result<VitShape> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            candle_core::bail!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size,
                self.patch_size
            )
        }
        if family == Family::Siglip && !self.vision_use_head {
            candle_core::bail!(
                "a SigLIP tower without its pooling head (vision_use_head = false) has no pooled output"
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
            act: activation(&self.hidden_act)?,
            eps: self.layer_norm_eps,
            family: match family {
                Family::Clip => VitFamily::Clip,
                Family::Siglip => VitFamily::Siglip,
            },
        })
    }
}

/// Small random CLIP configuration: 32×32 images, 8×8 patches, 2 layers, hidden 128.
pub fn small_config() -> serde_json::Value {
    serde_json::json!({
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "num_channels": 3
    })
}

/// Small random SigLIP configuration, the CLIP one's sizes.
pub fn small_siglip_config() -> serde_json::Value {
    let mut c = small_config();
    c["model_type"] = "siglip_vision_model".into();
    c
}

pub struct VisionEncoder {
    vit: Vit,
    pub hidden: usize,
    pub image_size: usize,
}

impl VisionEncoder {
    /// Parameters under `vb` with transformers' names (CLIP: `embeddings.*`, `pre_layrnorm`,
    /// `encoder.layers.*`, `post_layernorm`; SigLIP: the same without `pre_layrnorm` and
    /// `class_embedding`, plus `head.*`).
    pub fn new(vb: VarBuilder, cfg: &VitConfig, family: Family) -> Result<Self> {
        Ok(VisionEncoder {
            vit: Vit::new(vb, &cfg.shape(family)?)?,
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

/// How an image becomes the tower's input: transformers' image processor settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ImagePrep {
    /// CLIP: the shorter side's length; SigLIP: `None` (resize to `size` × `size`).
    pub shortest_edge: Option<usize>,
    /// The side of the square the tower takes (after the crop, for CLIP).
    pub size: usize,
    pub filter: Filter,
    pub rescale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The fields of a preprocessor_config.json this reads (others are ignored).
#[derive(Deserialize, Default)]
struct ProcessorJson {
    size: Option<serde_json::Value>,
    crop_size: Option<serde_json::Value>,
    do_center_crop: Option<bool>,
    resample: Option<Filter>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f32>,
    do_normalize: Option<bool>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
}

/// A `size`/`crop_size` entry: an integer, `{"shortest_edge": n}` or `{"height", "width"}`.
fn side(v: &serde_json::Value, what: &str) -> std::result::Result<(Option<usize>, usize), Error> {
    let get = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
    if let Some(n) = v.as_u64() {
        return Ok((Some(n as usize), n as usize));
    }
    if let Some(n) = get("shortest_edge") {
        return Ok((Some(n), n));
    }
    match (get("height"), get("width")) {
        (Some(h), Some(w)) if h == w => Ok((None, h)),
        _ => Err(Error::config(format!(
            "image processor {what} {v}: expected a number, shortest_edge or equal height and width"
        ))),
    }
}

impl ImagePrep {
    /// From a spec's preprocessor_config.json value (`Null`: the family's defaults at the
    /// tower's `image_size`); the final size must be the tower's.
    pub fn of(
        family: Family,
        cfg: &VitConfig,
        json: &serde_json::Value,
    ) -> std::result::Result<ImagePrep, Error> {
        let p: ProcessorJson = if json.is_null() {
            ProcessorJson::default()
        } else {
            serde_json::from_value(json.clone())
                .map_err(|e| Error::config(format!("image processor config: {e}")))?
        };
        let n = cfg.image_size;
        let (resized, cropped) = match family {
            Family::Clip => {
                let resize = p.size.as_ref().map(|v| side(v, "size")).transpose()?;
                let crop = p
                    .crop_size
                    .as_ref()
                    .map(|v| side(v, "crop_size"))
                    .transpose()?;
                let crop = match p.do_center_crop {
                    Some(false) => None,
                    _ => Some(crop.map_or(n, |c| c.1)),
                };
                (resize.unwrap_or((Some(n), n)), crop)
            }
            Family::Siglip => {
                let resize = p.size.as_ref().map(|v| side(v, "size")).transpose()?;
                (resize.unwrap_or((None, n)), None)
            }
        };
        if family == Family::Clip && cropped.is_none() {
            return Err(Error::config(
                "image processor: do_center_crop = false leaves images of varying shape; the tower takes squares",
            ));
        }
        let size = cropped.unwrap_or(resized.1);
        if size != n {
            return Err(Error::config(format!(
                "image processor gives {size}×{size} images, the tower takes {n}×{n}"
            )));
        }
        let (mean, std) = match family {
            Family::Clip => (CLIP_MEAN, CLIP_STD),
            Family::Siglip => ([0.5; 3], [0.5; 3]),
        };
        let normalise = p.do_normalize.unwrap_or(true);
        Ok(ImagePrep {
            shortest_edge: resized.0.filter(|_| family == Family::Clip),
            size,
            filter: p.resample.unwrap_or(Filter::Bicubic),
            rescale: if p.do_rescale.unwrap_or(true) {
                p.rescale_factor.unwrap_or(1.0 / 255.0)
            } else {
                1.0
            },
            mean: if normalise {
                p.image_mean.unwrap_or(mean)
            } else {
                [0.0; 3]
            },
            std: if normalise {
                p.image_std.unwrap_or(std)
            } else {
                [1.0; 3]
            },
        })
    }
}

/// An encoded image as the RGB pixels Pillow gives: JPEG through libjpeg-turbo's decoder
/// ([`super::jpeg`]), everything else through the `image` crate, then [`rgb_on_white`].
fn decode(bytes: &[u8]) -> std::result::Result<image::RgbImage, Error> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        && let Some((px, w, h)) = super::jpeg::decode_rgb(bytes).map_err(Error::decode)?
    {
        return image::RgbImage::from_raw(w as u32, h as u32, px)
            .ok_or_else(|| Error::decode("JPEG: pixel count does not match its size"));
    }
    let img = image::load_from_memory(bytes)
        .map_err(|e| Error::decode(format!("cannot decode image: {e}")))?;
    Ok(rgb_on_white(img))
}

/// transformers' `convert_to_rgb`: an image with alpha is composited over opaque white with
/// Pillow's `alpha_composite` integer arithmetic (7 extra bits, divisions by 255 rounded);
/// grey is replicated.
fn rgb_on_white(img: image::DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let div255 = |v: u32| ((v >> 8) + v) >> 8;
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0.map(u32::from);
        if a == 0 {
            return image::Rgb([255; 3]);
        }
        // Pillow's coef1 = a·255²·128 / (a·255 + 255·(255 − a)) is a·128 over white.
        let (c1, c2) = (a << 7, (255 - a) << 7);
        let mix = |c: u32| (div255(c * c1 + 255 * c2 + (0x80 << 7)) >> 7) as u8;
        image::Rgb([mix(r), mix(g), mix(b)])
    })
}

/// One encoded image file as the tower's input, CHW floats [3, size, size] ([`ImagePrep`]).
pub fn preprocess(bytes: &[u8], prep: &ImagePrep) -> std::result::Result<Vec<f32>, Error> {
    let img = decode(bytes)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::decode("image has no pixels"));
    }
    let size = prep.size;
    let (nw, nh) = match prep.shortest_edge {
        // transformers' get_resize_output_image_size: the longer side truncated.
        Some(s) if w <= h => (s, s * h / w),
        Some(s) => (s * w / h, s),
        None => (size, size),
    };
    if nw < size || nh < size {
        return Err(Error::decode(format!(
            "image resizes to {nw}×{nh}, smaller than the {size}×{size} crop"
        )));
    }
    let resized = pillow::resize(img.as_raw(), w, h, 3, nw, nh, prep.filter);
    // transformers' center_crop: the top-left corner rounded down.
    let (x0, y0) = ((nw - size) / 2, (nh - size) / 2);
    let mut out = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let p = &resized[((y0 + y) * nw + x0 + x) * 3..][..3];
            for c in 0..3 {
                out[(c * size + y) * size + x] =
                    (p[c] as f32 * prep.rescale - prep.mean[c]) / prep.std[c];
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
