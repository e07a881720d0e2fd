//! Audio: a log-mel spectrogram frontend and an AST-style patch transformer.
//!
//! Frontend (Whisper's conventions): mono 16 kHz (other rates are resampled by linear
//! interpolation, channels averaged), 25 ms Hann window (`N_FFT` = 400, periodic), 10 ms hop
//! (`HOP` = 160), power spectrum, `n_mels` triangular Slaney-scale mel filters over 0–8 kHz
//! with Slaney area normalisation (librosa's default, which Whisper uses), log10 with a floor
//! of 1e-10, clamped to 8 decades below the clip's maximum and mapped by (x + 4) / 4. The
//! spectrogram is cropped or zero-padded (after normalisation: silence) to `frames`.
//!
//! Encoder (AST, Gong et al. 2021): non-overlapping `patch`×`patch` patches of the
//! [n_mels, frames] spectrogram → linear embedding, a \[CLS\] token, learned positions, a
//! pre-LayerNorm transformer (the ViT of [`super::blocks`], one channel, GELU), LayerNorm'd
//! \[CLS\].

use super::blocks::{Activation, Vit, VitShape};
use crate::error::Error;
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AstConfig {
    pub n_mels: usize,
    /// Spectrogram frames fed to the encoder (10 ms each).
    pub frames: usize,
    pub patch_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
}

impl AstConfig {
    pub fn from_json(v: &serde_json::Value) -> std::result::Result<AstConfig, Error> {
        let c: AstConfig = serde_json::from_value(v.clone())
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
        }
    }
}

/// Small random configuration: 64 mels × 128 frames (1.28 s), 16×16 patches, 2 layers.
pub fn small_config() -> serde_json::Value {
    serde_json::json!({
        "n_mels": 64, "frames": 128, "patch_size": 16, "hidden_size": 128,
        "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4
    })
}

pub struct AudioEncoder {
    vit: Vit,
    pub hidden: usize,
    pub cfg: AstConfig,
}

impl AudioEncoder {
    pub fn new(vb: VarBuilder, cfg: &AstConfig) -> Result<Self> {
        Ok(AudioEncoder {
            vit: Vit::new(vb, &cfg.shape())?,
            hidden: cfg.hidden_size,
            cfg: cfg.clone(),
        })
    }

    /// Pooled states [B, hidden] of log-mels [B, n_mels, frames] (row-major).
    pub fn forward(&self, mels: &[f32], dev: &Device) -> Result<Tensor> {
        let (m, f) = (self.cfg.n_mels, self.cfg.frames);
        let b = mels.len() / (m * f);
        self.vit
            .forward(&Tensor::from_slice(mels, (b, 1, m, f), dev)?)
    }
}

/// Decode a WAV file to mono f32 samples at [`SAMPLE_RATE`].
pub fn read_wav(bytes: &[u8]) -> std::result::Result<Vec<f32>, Error> {
    let mut r = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::decode(format!("WAV: {e}")))?;
    let spec = r.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(Error::decode("WAV: no channels or zero sample rate"));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::decode(format!("WAV: {e}")))?,
        hound::SampleFormat::Int => {
            let full = (1i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 / full))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::decode(format!("WAV: {e}")))?
        }
    };
    let ch = spec.channels as usize;
    let mono: Vec<f32> = interleaved
        .chunks_exact(ch)
        .map(|c| c.iter().sum::<f32>() / ch as f32)
        .collect();
    if mono.iter().any(|x| !x.is_finite()) {
        return Err(Error::decode("WAV: non-finite samples"));
    }
    Ok(resample_linear(&mono, spec.sample_rate, SAMPLE_RATE))
}

/// Linear-interpolation resampling (adequate for the 16 kHz log-mel frontend's 8 kHz band).
pub fn resample_linear(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || x.is_empty() {
        return x.to_vec();
    }
    let n = (x.len() as u64 * to as u64 / from as u64) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 * from as f64 / to as f64;
            let j = t.floor() as usize;
            let frac = (t - j as f64) as f32;
            let a = x[j.min(x.len() - 1)];
            let b = x[(j + 1).min(x.len() - 1)];
            a + (b - a) * frac
        })
        .collect()
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
