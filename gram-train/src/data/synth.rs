//! Synthetic multimodal datasets where joint alignment matters.
//!
//! Each sample draws latent factors: a shared part c (every modality sees it), one private
//! factor s_t per non-anchor modality t, and a nuisance u_t per modality (seen only by t). A
//! non-anchor modality observes [c, s_t, u_t]; the **anchor observes [c, Σ_t W_t s_t, u_a]** —
//! a mixture of what the other modalities carry, so knowing one modality pins down only part
//! of the anchor's content, and the best match for an anchor is the *joint* tuple. Each
//! modality's features are a random depth-`depth` tanh MLP of its latent plus Gaussian noise.
//! The generators (W_t, MLPs) are drawn from `seed`, then samples of every split from the
//! same generators (train, val and test differ only in their samples).

use crate::data::features::{DatasetInfo, split_path};
use crate::data::missing;
use crate::error::Error;
use gram_host::output::{write_npy_f32, write_text};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The knobs of [`generate`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SynthConfig {
    pub modalities: Vec<String>,
    pub anchor: String,
    /// Feature size of each modality (order of `modalities`).
    pub dims: Vec<usize>,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// Size of the latent every modality shares.
    pub shared: usize,
    /// Size of each non-anchor modality's private factor (mixed into the anchor).
    pub private: usize,
    /// Size of each modality's nuisance factor (information no other modality has).
    pub unique: usize,
    /// Standard deviation of the feature noise, relative to unit-variance features.
    pub noise: f64,
    /// Hidden tanh layers of each modality's random feature map (0 = linear).
    pub depth: usize,
    /// Fraction of samples lacking each listed modality (their rows NaN; `--missing MOD=F`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<(String, f64)>,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> SynthConfig {
        SynthConfig {
            modalities: vec!["text".into(), "video".into(), "audio".into()],
            anchor: "text".into(),
            dims: vec![384, 512, 256],
            train: 8192,
            val: 1024,
            test: 1024,
            shared: 4,
            private: 12,
            unique: 8,
            noise: 0.5,
            depth: 2,
            seed: 0,
            missing: Vec::new(),
        }
    }
}

fn gaussian(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| Distribution::<f64>::sample(&StandardNormal, rng) * scale)
        .collect()
}

/// y = W x for row-major W [out, in].
fn apply(w: &[f64], x: &[f64], out: usize) -> Vec<f64> {
    let inp = x.len();
    (0..out)
        .map(|o| {
            w[o * inp..(o + 1) * inp]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

/// A random feature map: `depth` tanh layers of width `hidden`, then a linear map to `out`.
struct FeatureMap {
    layers: Vec<(Vec<f64>, usize)>,
}

impl FeatureMap {
    fn new(rng: &mut ChaCha8Rng, inp: usize, out: usize, depth: usize) -> FeatureMap {
        let hidden = 64;
        let mut layers = Vec::new();
        let mut fan_in = inp;
        for _ in 0..depth {
            layers.push((
                gaussian(rng, hidden * fan_in, (1.5 / fan_in as f64).sqrt()),
                hidden,
            ));
            fan_in = hidden;
        }
        layers.push((
            gaussian(rng, out * fan_in, (1.0 / fan_in as f64).sqrt()),
            out,
        ));
        FeatureMap { layers }
    }

    fn forward(&self, x: &[f64]) -> Vec<f64> {
        let mut h = x.to_vec();
        let last = self.layers.len() - 1;
        for (i, (w, out)) in self.layers.iter().enumerate() {
            h = apply(w, &h, *out);
            if i < last {
                h.iter_mut().for_each(|v| *v = v.tanh());
            }
        }
        h
    }
}

/// The generators of a synthetic dataset (feature maps and mixers, drawn from its seed):
/// [`World::sample`] draws any number of samples of the same distribution, so corpora far
/// larger than a split (for benchmarks) come from the world a model was trained on.
pub struct World {
    cfg: SynthConfig,
    anchor: usize,
    maps: Vec<FeatureMap>,
    mixers: Vec<Vec<f64>>,
}

impl World {
    /// The world of `cfg`, and the random stream positioned where its train split begins.
    pub fn new(cfg: &SynthConfig) -> Result<(World, ChaCha8Rng), Error> {
        let k = cfg.modalities.len();
        let anchor = cfg
            .modalities
            .iter()
            .position(|m| *m == cfg.anchor)
            .ok_or_else(|| Error::config("anchor must be one of the modalities"))?;
        if cfg.dims.len() != k || k < 2 {
            return Err(Error::config(format!(
                "need one dimension per modality and at least 2 modalities ({} dims for {k})",
                cfg.dims.len()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let latent = cfg.shared + cfg.private + cfg.unique;
        let maps: Vec<FeatureMap> = cfg
            .dims
            .iter()
            .map(|&d| FeatureMap::new(&mut rng, latent, d, cfg.depth))
            .collect();
        let mixers: Vec<Vec<f64>> = (0..k)
            .map(|_| {
                gaussian(
                    &mut rng,
                    cfg.private * cfg.private,
                    (1.0 / (k - 1) as f64 / cfg.private as f64).sqrt(),
                )
            })
            .collect();
        let world = World {
            cfg: cfg.clone(),
            anchor,
            maps,
            mixers,
        };
        Ok((world, rng))
    }

    /// `n` samples drawn from `rng`: one row-major `[n, dims[t]]` feature matrix per modality.
    pub fn sample(&self, rng: &mut ChaCha8Rng, n: usize) -> Vec<Vec<f32>> {
        let (cfg, k, a) = (&self.cfg, self.cfg.modalities.len(), self.anchor);
        let mut feats: Vec<Vec<f32>> = cfg
            .dims
            .iter()
            .map(|&d| Vec::with_capacity(n * d))
            .collect();
        for _ in 0..n {
            let c = gaussian(rng, cfg.shared, 1.0);
            let s: Vec<Vec<f64>> = (0..k).map(|_| gaussian(rng, cfg.private, 1.0)).collect();
            let mut mix = vec![0.0; cfg.private];
            for t in (0..k).filter(|&t| t != a) {
                for (m, v) in mix
                    .iter_mut()
                    .zip(apply(&self.mixers[t], &s[t], cfg.private))
                {
                    *m += v;
                }
            }
            for t in 0..k {
                let mut z = c.clone();
                z.extend(if t == a { &mix } else { &s[t] });
                z.extend(gaussian(rng, cfg.unique, 1.0));
                let x = self.maps[t].forward(&z);
                let noise = gaussian(rng, x.len(), cfg.noise);
                feats[t].extend(x.iter().zip(noise).map(|(v, e)| (v + e) as f32));
            }
        }
        feats
    }
}

/// Write the dataset described by `cfg` into `out` (dataset.json + one .npy per split and
/// modality, each written atomically).
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<(), Error> {
    let (world, mut rng) = World::new(cfg)?;
    for (m, f) in &cfg.missing {
        missing::parse(&format!("{m}={f}"), &cfg.modalities, &cfg.anchor)?;
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    for (split, n) in [("train", cfg.train), ("val", cfg.val), ("test", cfg.test)] {
        let mut feats = world.sample(&mut rng, n);
        for (m, fraction) in &cfg.missing {
            let t = cfg.modalities.iter().position(|x| x == m).expect("checked");
            let d = cfg.dims[t];
            for (i, _) in missing::rows(cfg.seed, split, t, n, *fraction)
                .iter()
                .enumerate()
                .filter(|(_, miss)| **miss)
            {
                feats[t][i * d..(i + 1) * d].fill(f32::NAN);
            }
        }
        for (t, m) in cfg.modalities.iter().enumerate() {
            write_npy_f32(&split_path(out, split, m), &[n, cfg.dims[t]], &feats[t])
                .map_err(|e| Error::io(out, e))?;
        }
    }
    let info = DatasetInfo {
        modalities: cfg.modalities.clone(),
        anchor: cfg.anchor.clone(),
        missing: cfg.missing.iter().map(|(m, _)| m.clone()).collect(),
    };
    write_text(
        &out.join("dataset.json"),
        &serde_json::to_string_pretty(&info).expect("serialisable"),
    )
    .map_err(|e| Error::io(out, e))?;
    write_text(
        &out.join("synth.json"),
        &serde_json::to_string_pretty(cfg).expect("serialisable"),
    )
    .map_err(|e| Error::io(out, e))
}
