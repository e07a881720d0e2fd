//! Per-modality projection heads, the learnable temperature and the DAM head. Plain structs
//! with `new`/`forward`; parameters live in a `VarMap` under stable names (so checkpoints are
//! ordinary safetensors files) and are initialised from a seeded ChaCha RNG (Candle's CPU RNG
//! cannot be seeded, and runs must be reproducible).

use crate::model::encoders::{self, Encoder, EncoderSpec, HostInput};
use crate::ops::gelu::gelu_erf;
use crate::ops::precision::Linear;
use candle_core::{D, DType, Device, Result, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use serde::{Deserialize, Serialize};

/// Shapes of the model; saved with every checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelConfig {
    /// Modality names; `anchor` is one of them.
    pub modalities: Vec<String>,
    pub anchor: String,
    /// Input feature size per modality (same order as `modalities`).
    pub input_dims: Vec<usize>,
    /// Output embedding size (512 in the paper's heads).
    pub embed_dim: usize,
    /// Hidden size of an optional per-modality MLP encoder before the projection (0 = none).
    pub mlp_hidden: usize,
    /// Hidden size of the DAM head (0 = no DAM head).
    pub dam_hidden: usize,
    /// Initial temperature τ.
    pub init_temperature: f64,
    /// Encoder per modality (same order; empty: every modality is pre-computed features).
    #[serde(default)]
    pub encoders: Vec<EncoderSpec>,
    /// Modalities (never the anchor) with a learned placeholder embedding that stands in for a
    /// missing vector (`missing = "placeholder"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placeholders: Vec<String>,
}

impl ModelConfig {
    /// Modality `t`'s encoder spec (features when none is configured).
    pub fn encoder(&self, t: usize) -> EncoderSpec {
        self.encoders.get(t).cloned().unwrap_or_default()
    }
}

/// The temperature is learned as log(1/τ), clamped to τ ∈ [0.01, 1] (CLIP's logit-scale
/// parameterisation: positive by construction, bounded so logits cannot blow up).
pub const LOG_INV_TAU_RANGE: (f64, f64) = (0.0, 4.605_170_185_988_091); // ln 1 .. ln 100

/// Kaiming-uniform weight [out, in] from `rng`, registered in `varmap` as `name`.
fn init_weight(
    varmap: &VarMap,
    name: &str,
    out: usize,
    inp: usize,
    rng: &mut ChaCha8Rng,
    dev: &Device,
) -> Result<Tensor> {
    let bound = (1.0 / inp as f64).sqrt() as f32;
    let dist = Uniform::new_inclusive(-bound, bound).expect("bound > 0");
    let values: Vec<f32> = (0..out * inp).map(|_| dist.sample(rng)).collect();
    register(varmap, name, Tensor::from_vec(values, (out, inp), dev)?)
}

fn register(varmap: &VarMap, name: &str, value: Tensor) -> Result<Tensor> {
    let var = Var::from_tensor(&value)?;
    let t = var.as_tensor().clone();
    varmap
        .data()
        .lock()
        .expect("varmap lock")
        .insert(name.to_string(), var);
    Ok(t)
}

/// Modality features → optional MLP (Linear, GELU) → Linear without bias → L2 normalise.
pub struct Head {
    mlp: Option<(Linear, Linear)>,
    proj: Linear,
}

impl Head {
    fn new(
        varmap: &VarMap,
        prefix: &str,
        inp: usize,
        cfg: &ModelConfig,
        rng: &mut ChaCha8Rng,
        dev: &Device,
    ) -> Result<Head> {
        let (mlp, proj_in) = if cfg.mlp_hidden > 0 {
            let h = cfg.mlp_hidden;
            let w1 = init_weight(varmap, &format!("{prefix}.mlp.0.weight"), h, inp, rng, dev)?;
            let b1 = register(
                varmap,
                &format!("{prefix}.mlp.0.bias"),
                Tensor::zeros(h, DType::F32, dev)?,
            )?;
            let w2 = init_weight(varmap, &format!("{prefix}.mlp.2.weight"), h, h, rng, dev)?;
            let b2 = register(
                varmap,
                &format!("{prefix}.mlp.2.bias"),
                Tensor::zeros(h, DType::F32, dev)?,
            )?;
            (
                Some((Linear::new(w1, Some(b1)), Linear::new(w2, Some(b2)))),
                h,
            )
        } else {
            (None, inp)
        };
        let w = init_weight(
            varmap,
            &format!("{prefix}.proj.weight"),
            cfg.embed_dim,
            proj_in,
            rng,
            dev,
        )?;
        Ok(Head {
            mlp,
            proj: Linear::new(w, None),
        })
    }

    /// Unit-norm embeddings [B, embed_dim] of features [B, input_dim].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.mlp {
            Some((l1, l2)) => l2.forward(&gelu_erf(&l1.forward(x)?)?)?,
            None => x.clone(),
        };
        l2_normalize(&self.proj.forward(&x)?)
    }
}

/// Rows divided by their norms (ε keeps a zero row finite).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// DAM head: match logit of an (anchor, candidate) pair from
/// [a ⊕ m₁ ⊕ … ⊕ a⊙m₁ ⊕ … ⊕ −vol/τ] → Linear → GELU → Linear. The products a⊙mₜ put every
/// anchor–modality similarity one linear layer away, and the pair's GRAM logit (detached)
/// gives it the volume itself: from the concatenation alone an MLP has to discover
/// multiplicative interactions and, in our runs, did not (AUC 0.5 after 300 steps), so
/// re-ranking with it was worse than the volume order.
pub struct DamHead {
    l1: Linear,
    l2: Linear,
}

/// Input width of the DAM head for k modalities of dimension d.
pub fn dam_input_dim(k: usize, d: usize) -> usize {
    (2 * k - 1) * d + 1
}

impl DamHead {
    /// Logits \[P\] of P pairs: `anchor` [P, D], each other modality's rows [P, D], and the
    /// pairs' GRAM logits −vol/τ \[P\].
    pub fn score(&self, anchor: &Tensor, others: &[Tensor], gram_logit: &Tensor) -> Result<Tensor> {
        let mut parts = vec![anchor.clone()];
        parts.extend(others.iter().cloned());
        for o in others {
            parts.push(anchor.mul(o)?);
        }
        parts.push(gram_logit.unsqueeze(1)?.to_dtype(anchor.dtype())?);
        let joined = Tensor::cat(&parts, 1)?;
        self.l2
            .forward(&gelu_erf(&self.l1.forward(&joined)?)?)?
            .squeeze(1)
    }
}

/// Everything trainable.
pub struct GramModel {
    pub config: ModelConfig,
    /// One encoder per modality (feature modalities: the identity).
    pub encoders: Vec<Encoder>,
    /// One head per modality, in `config.modalities` order.
    pub heads: Vec<Head>,
    pub log_inv_tau: Tensor,
    pub dam: Option<DamHead>,
    /// Per modality: its learned placeholder embedding [D] (see [`ModelConfig::placeholders`]).
    pub placeholders: Vec<Option<Tensor>>,
}

impl GramModel {
    /// Fresh parameters from `seed`, registered in `varmap`.
    pub fn new(
        config: &ModelConfig,
        varmap: &VarMap,
        seed: u64,
        dev: &Device,
    ) -> Result<GramModel> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut encs = Vec::with_capacity(config.modalities.len());
        for (t, (name, &inp)) in config.modalities.iter().zip(&config.input_dims).enumerate() {
            let prefix = format!("enc.{name}");
            let vb = VarBuilder::from_varmap(varmap, DType::F32, dev).pp(&prefix);
            encs.push(Encoder::new(&config.encoder(t), vb, inp)?);
            // Encoders draw from their own stream, so feature-only models are unchanged.
            encoders::seeded_init(varmap, &prefix, seed.wrapping_add(t as u64))?;
        }
        let heads = config
            .modalities
            .iter()
            .zip(&encs)
            .map(|(name, enc)| {
                Head::new(
                    varmap,
                    &format!("head.{name}"),
                    enc.hidden(),
                    config,
                    &mut rng,
                    dev,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let log_inv_tau = register(
            varmap,
            "log_inv_tau",
            Tensor::new((1.0 / config.init_temperature).ln() as f32, dev)?,
        )?;
        let dam = if config.dam_hidden > 0 {
            let joined = dam_input_dim(config.modalities.len(), config.embed_dim);
            let w1 = init_weight(
                varmap,
                "dam.0.weight",
                config.dam_hidden,
                joined,
                &mut rng,
                dev,
            )?;
            let b1 = register(
                varmap,
                "dam.0.bias",
                Tensor::zeros(config.dam_hidden, DType::F32, dev)?,
            )?;
            let w2 = init_weight(varmap, "dam.2.weight", 1, config.dam_hidden, &mut rng, dev)?;
            let b2 = register(varmap, "dam.2.bias", Tensor::zeros(1, DType::F32, dev)?)?;
            Some(DamHead {
                l1: Linear::new(w1, Some(b1)),
                l2: Linear::new(w2, Some(b2)),
            })
        } else {
            None
        };
        // From a stream of their own, so models without placeholders are unchanged.
        let mut prng = ChaCha8Rng::seed_from_u64(seed ^ 0x91ac_e401_de5e_ed00);
        let placeholders = config
            .modalities
            .iter()
            .map(|m| {
                if !config.placeholders.contains(m) {
                    return Ok(None);
                }
                let v: Vec<f32> = (0..config.embed_dim)
                    .map(|_| rand_distr::StandardNormal.sample(&mut prng))
                    .collect();
                let t = Tensor::from_vec(v, config.embed_dim, dev)?;
                register(varmap, &format!("placeholder.{m}"), t).map(Some)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GramModel {
            config: config.clone(),
            encoders: encs,
            heads,
            log_inv_tau,
            dam,
            placeholders,
        })
    }

    /// 1/τ from the clamped log parameter.
    pub fn inv_tau(&self) -> Result<Tensor> {
        self.log_inv_tau
            .clamp(LOG_INV_TAU_RANGE.0, LOG_INV_TAU_RANGE.1)?
            .exp()
    }

    /// Index of the anchor modality in `config.modalities`.
    pub fn anchor_index(&self) -> usize {
        self.config
            .modalities
            .iter()
            .position(|m| *m == self.config.anchor)
            .expect("anchor is a modality")
    }

    /// Embed one batch: host inputs in `config.modalities` order → unit embeddings [B, D],
    /// same order. Frozen encoders' outputs are detached (no backward through them).
    pub fn embed(&self, inputs: &[HostInput], dev: &Device) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(inputs.len());
        for (t, ((enc, head), x)) in self
            .encoders
            .iter()
            .zip(&self.heads)
            .zip(inputs)
            .enumerate()
        {
            let mut h = enc.forward(x, dev)?;
            if !self.config.encoder(t).trainable {
                h = h.detach();
            }
            out.push(head.forward(&h)?);
        }
        Ok(out)
    }
}

/// Whether AdamW should decay a parameter: weight matrices yes; biases and the temperature no.
pub fn decays(name: &str) -> bool {
    name.ends_with(".weight")
}
