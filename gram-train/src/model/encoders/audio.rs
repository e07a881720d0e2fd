//! Audio encoders: Hugging Face's `ASTModel` over Kaldi filterbanks (kind `ast`, [`super::ast`],
//! [`super::fbank`]), or the AST-style patch transformer over a Whisper-style log-mel
//! spectrogram defined here (kind `ast-mel`; also what `ast` checkpoints written before the
//! Hugging Face AST existed hold, recognised by their `n_mels` field). The log-mel one
//! normalises each clip by its own maximum, so it needs no dataset statistics: for training
//! from scratch on audio unlike AudioSet; it has no pretrained weights anywhere.
//!
//! Log-mel front end (Whisper's conventions): mono 16 kHz ([`super::wav`]), 25 ms Hann window (`N_FFT` = 400, periodic), 10 ms hop
//! (`HOP` = 160), power spectrum, `n_mels` triangular Slaney-scale mel filters over 0–8 kHz
//! with Slaney area normalisation (librosa's default, which Whisper uses), log10 with a floor
//! of 1e-10, clamped to 8 decades below the clip's maximum and mapped by (x + 4) / 4. The
//! spectrogram is cropped or zero-padded (after normalisation: silence) to `frames`.
//!
//! Encoder (AST, Gong et al. 2021): non-overlapping `patch`×`patch` patches of the
//! [n_mels, frames] spectrogram → linear embedding, a \[CLS\] token, learned positions, a
//! pre-LayerNorm transformer (the ViT of [`super::blocks`], one channel, GELU), LayerNorm'd
//! \[CLS\].

use super::ast::{Ast, AstConfig};
use super::blocks::{Activation, Vit, VitFamily, VitShape};
use super::fbank::AstFeatureConfig;
use super::wav::SAMPLE_RATE;
use crate::error::Error;
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub const N_FFT: usize = 400;
pub const HOP: usize = 160;

/// The log-mel AST's configuration (kind `ast-mel`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MelAstConfig {
    pub n_mels: usize,
    /// Spectrogram frames fed to the encoder (10 ms each).
    pub frames: usize,
    pub patch_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
}

impl MelAstConfig {
    pub fn from_json(v: &serde_json::Value) -> std::result::Result<MelAstConfig, Error> {
        let c: MelAstConfig = serde_json::from_value(v.clone())
            .map_err(|e| Error::config(format!("audio config: {e}")))?;
        if c.patch_size == 0
            || !c.n_mels.is_multiple_of(c.patch_size)
            || !c.frames.is_multiple_of(c.patch_size)
        {
            return Err(Error::config(format!(
                "audio config: n_mels {} and frames {} must be multiples of patch_size {}",
                c.n_mels, c.frames, c.patch_size
            )));
        }
        Ok(c)
    }

    fn shape(&self) -> VitShape {
        VitShape {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            channels: 1,
            patch: self.patch_size,
            grid_h: self.n_mels / self.patch_size,
            grid_w: self.frames / self.patch_size,
            act: Activation::Gelu,
            eps: 1e-6,
            family: VitFamily::Clip,
        }
    }
}

/// Small random configuration of the log-mel AST: 64 mels × 128 frames (1.28 s), 16×16 patches, 2 layers.
pub fn small_config() -> serde_json::Value {
    serde_json::json!({
        "n_mels": 64, "frames": 128, "patch_size": 16, "hidden_size": 128,
        "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4
    })
}

/// Which audio encoder a configuration describes, and its front end.
#[derive(Clone, Debug, PartialEq)]
pub enum AudioArch {
    /// Hugging Face `ASTModel` with `ASTFeatureExtractor`'s features.
    Ast(AstConfig, AstFeatureConfig),
    /// The log-mel AST.
    Mel(MelAstConfig),
}

impl AudioArch {
    /// From a resolved spec's config.json value and preprocessor_config.json value (`Null`
    /// when absent: the extractor's defaults, sized to the model). A config with `n_mels` is
    /// the log-mel AST whatever the kind says (checkpoints written before kind `ast-mel`).
    pub fn of(
        config: &serde_json::Value,
        preprocessor: &serde_json::Value,
    ) -> std::result::Result<AudioArch, Error> {
        if config.get("n_mels").is_some() {
            return Ok(AudioArch::Mel(MelAstConfig::from_json(config)?));
        }
        let c = AstConfig::from_json(config)?;
        let f = if preprocessor.is_null() {
            AstFeatureConfig {
                num_mel_bins: c.num_mel_bins,
                max_length: c.max_length,
                ..AstFeatureConfig::default()
            }
        } else {
            serde_json::from_value::<AstFeatureConfig>(preprocessor.clone())
                .map_err(|e| Error::config(format!("AST preprocessor config: {e}")))?
        };
        if (f.num_mel_bins, f.max_length) != (c.num_mel_bins, c.max_length) {
            return Err(Error::config(format!(
                "AST preprocessor config gives {} mel bins × {} frames, the model takes {} × {}",
                f.num_mel_bins, f.max_length, c.num_mel_bins, c.max_length
            )));
        }
        if f.sampling_rate != SAMPLE_RATE {
            return Err(Error::config(format!(
                "AST preprocessor config: sampling_rate {} (the filterbank is defined at {SAMPLE_RATE} Hz)",
                f.sampling_rate
            )));
        }
        Ok(AudioArch::Ast(c, f))
    }

    /// Values per clip the encoder takes.
    pub fn input_len(&self) -> usize {
        match self {
            AudioArch::Ast(c, _) => c.max_length * c.num_mel_bins,
            AudioArch::Mel(c) => c.n_mels * c.frames,
        }
    }

    /// The encoder's input for one clip of 16 kHz mono samples.
    pub fn features(&self, samples: &[f32], filters: &[f32]) -> Vec<f32> {
        match self {
            AudioArch::Ast(_, f) => super::fbank::ast_features(samples, f),
            AudioArch::Mel(c) => log_mel(samples, c.n_mels, c.frames, filters),
        }
    }

    /// The log-mel filters [`AudioArch::features`] takes (empty for the AST's filterbank,
    /// which builds its own).
    pub fn filters(&self) -> Vec<f32> {
        match self {
            AudioArch::Ast(..) => Vec::new(),
            AudioArch::Mel(c) => mel_filters(c.n_mels),
        }
    }
}

pub enum AudioEncoder {
    Ast(Ast),
    Mel { vit: Vit, cfg: MelAstConfig },
}

impl AudioEncoder {
    pub fn new(vb: VarBuilder, arch: &AudioArch) -> Result<Self> {
        Ok(match arch {
            AudioArch::Ast(c, _) => AudioEncoder::Ast(Ast::new(vb, c)?),
            AudioArch::Mel(c) => AudioEncoder::Mel {
                vit: Vit::new(vb, &c.shape())?,
                cfg: c.clone(),
            },
        })
    }

    pub fn hidden(&self) -> usize {
        match self {
            AudioEncoder::Ast(a) => a.cfg.hidden_size,
            AudioEncoder::Mel { cfg, .. } => cfg.hidden_size,
        }
    }

    /// Pooled states [B, hidden] of B clips' [`AudioArch::features`] (row-major).
    pub fn forward(&self, input: &[f32], dev: &Device) -> Result<Tensor> {
        match self {
            AudioEncoder::Ast(a) => a.forward(input, dev),
            AudioEncoder::Mel { vit, cfg } => {
                let (m, f) = (cfg.n_mels, cfg.frames);
                let b = input.len() / (m * f);
                vit.forward(&Tensor::from_slice(input, (b, 1, m, f), dev)?)
            }
        }
    }
}

fn hz_to_mel(f: f64) -> f64 {
    // Slaney: linear below 1 kHz, logarithmic above.
    let (f_sp, min_log_hz, min_log_mel, logstep) = (200.0 / 3.0, 1000.0, 15.0, 6.4f64.ln() / 27.0);
    if f < min_log_hz {
        f / f_sp
    } else {
        min_log_mel + (f / min_log_hz).ln() / logstep
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (f_sp, min_log_hz, min_log_mel, logstep) = (200.0 / 3.0, 1000.0, 15.0, 6.4f64.ln() / 27.0);
    if m < min_log_mel {
        m * f_sp
    } else {
        min_log_hz * ((m - min_log_mel) * logstep).exp()
    }
}

/// Slaney-normalised triangular mel filters [n_mels, N_FFT/2 + 1] over 0..sr/2 (librosa's
/// `filters.mel(sr=16000, n_fft=400, n_mels)`).
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let bins = N_FFT / 2 + 1;
    let sr = SAMPLE_RATE as f64;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut w = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let (l, c, r) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (r - l);
        for b in 0..bins {
            let f = b as f64 * sr / N_FFT as f64;
            let up = (f - l) / (c - l);
            let down = (r - f) / (r - c);
            w[m * bins + b] = (up.min(down).max(0.0) * norm) as f32;
        }
    }
    w
}

/// Log-mel spectrogram [n_mels, frames] (row-major) of 16 kHz mono `samples`; see the module
/// documentation for every parameter. Always finite (silence maps to a constant).
pub fn log_mel(samples: &[f32], n_mels: usize, frames: usize, filters: &[f32]) -> Vec<f32> {
    use realfft::RealFftPlanner;
    let bins = N_FFT / 2 + 1;
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
    let window: Vec<f32> = (0..N_FFT)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / N_FFT as f32).cos())
        .collect();
    let available = if samples.len() >= N_FFT {
        1 + (samples.len() - N_FFT) / HOP
    } else {
        0
    };
    let used = available.min(frames);
    let mut out = vec![f32::NEG_INFINITY; n_mels * frames];
    let (mut input, mut spec) = (fft.make_input_vec(), fft.make_output_vec());
    let mut power = vec![0f32; bins];
    for t in 0..used {
        let s = &samples[t * HOP..t * HOP + N_FFT];
        for i in 0..N_FFT {
            input[i] = s[i] * window[i];
        }
        fft.process(&mut input, &mut spec)
            .expect("sizes from the plan");
        for (p, c) in power.iter_mut().zip(&spec) {
            *p = c.norm_sqr();
        }
        for m in 0..n_mels {
            let e: f32 = filters[m * bins..(m + 1) * bins]
                .iter()
                .zip(&power)
                .map(|(w, p)| w * p)
                .sum();
            out[m * frames + t] = e.max(1e-10).log10();
        }
    }
    let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let max = if max.is_finite() { max } else { -10.0 };
    for v in &mut out {
        // Padding frames (−∞) become the floor, like silence.
        *v = (v.max(max - 8.0) + 4.0) / 4.0;
    }
    out
}
