//! What a training run trains: [`TrainConfig`] (flags or a TOML file) and the loss it uses.

use crate::error::Error;
use crate::model::encoders::EncoderSpec;
use crate::ops::precision::Precision;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// GRAM volume contrastive loss (+ DAM when dam_weight > 0).
    Gram,
    /// Anchor-pairwise cosine InfoNCE, summed over modalities.
    Pairwise,
    /// Symile's multilinear inner product with O(N) negatives.
    Symile,
}

/// How training scores a sample that lacks a modality (datasets whose `dataset.json` lists
/// modalities as `missing`). Complete batches train exactly as without.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MissingRule {
    /// The vectors present: every embedding gets k more coordinates, 0, and a missing vector of
    /// modality t becomes e_{D+t} — of unit length, orthogonal to every other vector of its
    /// tuple — so a tuple's volume is that of its present vectors (`gram eval --missing
    /// present`), exactly and differentiably; in the similarity losses a missing vector scores 0.
    #[default]
    Present,
    /// As `present`, the missing vector's axis scaled by the median distance a present vector
    /// of that modality adds over the batch's complete samples (`gram eval --missing scaled`):
    /// an incomplete tuple is then neither favoured nor penalised for having fewer vectors.
    Scaled,
    /// A learned placeholder embedding per modality (Symile's rule), normalised like the
    /// others, stands in for a missing vector.
    Placeholder,
    /// Incomplete samples are left out of training (what one does without this support).
    Drop,
}

/// Everything `fit` needs besides the data; from flags or a TOML file (`--config`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub loss: LossKind,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup: u64,
    /// Final learning rate as a fraction of `lr` (cosine decay target).
    pub final_lr_frac: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub clip: f64,
    pub label_smoothing: f64,
    /// Weight of the DAM loss (GRAM only; 0 disables the head).
    pub dam_weight: f64,
    pub dam_hidden: usize,
    pub embed_dim: usize,
    pub mlp_hidden: usize,
    pub init_temperature: f64,
    pub seed: u64,
    pub log_every: u64,
    /// Validation R@1 every this many steps (0 = only at the end).
    pub eval_every: u64,
    /// Checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// Embeddings of `snapshot_split` for `gram report --snapshots` at step 0, every this many
    /// steps and at the end, in OUT/snapshots (0 = none).
    pub snapshot_every: u64,
    pub snapshot_split: String,
    /// Modalities to train on (empty: all of dataset.json's); the anchor (empty: dataset's).
    pub modalities: Vec<String>,
    pub anchor: String,
    /// Raw datasets: encoder per modality (`[encoders.text] kind = "bert"`, `path`, …).
    pub encoders: BTreeMap<String, EncoderSpec>,
    /// Learning rate of trainable encoders relative to `lr` (heads, temperature, DAM: 1).
    pub encoder_lr_scale: f64,
    /// Modalities whose encoders stay frozen (all others train; also when finetuning).
    pub frozen: Vec<String>,
    /// Operand precision of the encoders' and heads' matmuls (see [`crate::ops::precision`]).
    pub precision: Precision,
    /// How a sample lacking a modality is scored.
    pub missing: MissingRule,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            loss: LossKind::Gram,
            steps: 1000,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 0.05,
            warmup: 50,
            final_lr_frac: 0.05,
            clip: 1.0,
            label_smoothing: 0.1,
            dam_weight: 0.1,
            dam_hidden: 256,
            embed_dim: 512,
            mlp_hidden: 0,
            init_temperature: 0.07,
            seed: 0,
            log_every: 10,
            eval_every: 0,
            checkpoint_every: 0,
            snapshot_every: 0,
            snapshot_split: "val".into(),
            modalities: Vec::new(),
            anchor: String::new(),
            encoders: BTreeMap::new(),
            encoder_lr_scale: 0.1,
            frozen: Vec::new(),
            precision: Precision::F32,
            missing: MissingRule::Present,
        }
    }
}

impl TrainConfig {
    /// Refuses numeric settings no run can use, naming the flag (and TOML key): NaN or
    /// infinite rates, negative decay, a label smoothing outside [0, 1), a temperature ≤ 0,
    /// zero steps or batch. Called before any data is read, so nothing is written.
    pub fn validate(&self) -> Result<(), Error> {
        let finite_at_least = |name: &str, v: f64, min: f64, strict: bool| {
            let ok = v.is_finite() && if strict { v > min } else { v >= min };
            if ok {
                Ok(())
            } else {
                let rel = if strict { ">" } else { ">=" };
                Err(Error::config(format!(
                    "--{} ({name}): {v} is not a finite number {rel} {min}",
                    name.replace('_', "-")
                )))
            }
        };
        finite_at_least("lr", self.lr, 0.0, true)?;
        finite_at_least("weight_decay", self.weight_decay, 0.0, false)?;
        finite_at_least("final_lr_frac", self.final_lr_frac, 0.0, false)?;
        finite_at_least("clip", self.clip, 0.0, false)?;
        finite_at_least("dam_weight", self.dam_weight, 0.0, false)?;
        finite_at_least("init_temperature", self.init_temperature, 0.0, true)?;
        finite_at_least("encoder_lr_scale", self.encoder_lr_scale, 0.0, false)?;
        finite_at_least("label_smoothing", self.label_smoothing, 0.0, false)?;
        if self.label_smoothing >= 1.0 {
            return Err(Error::config(format!(
                "--label-smoothing (label_smoothing): {} is not below 1",
                self.label_smoothing
            )));
        }
        if self.steps == 0 || self.batch_size < 2 || self.embed_dim == 0 {
            return Err(Error::config(format!(
                "--steps, --batch-size, --embed-dim: need steps ≥ 1, batch ≥ 2, dimension ≥ 1 (got {}, {}, {})",
                self.steps, self.batch_size, self.embed_dim
            )));
        }
        Ok(())
    }
}
