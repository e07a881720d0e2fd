//! One training step (embedding, loss, gradients) and the parameters the optimizer steps.

use crate::config::TrainConfig;
use crate::data::source::HostBatch;
use crate::model::gram::{GramModel, decays};
use crate::train::build::{Loaded, named_vars};
use crate::train::distributed::{Collective, step_gradients};
use candle_core::backprop::GradStore;
use candle_core::{Device, Var};
use rand_chacha::ChaCha8Rng;

/// The optimizer's parameters: trainable variables (frozen encoders left out), each with
/// whether it decays and its learning-rate scale.
pub fn optimizer_params(loaded: &Loaded, cfg: &TrainConfig) -> Vec<(String, Var, bool, f64)> {
    let config = &loaded.model.config;
    named_vars(&loaded.varmap)
        .into_iter()
        .filter_map(|(name, var)| {
            let encoder = config
                .modalities
                .iter()
                .position(|m| name.starts_with(&format!("enc.{m}.")));
            let scale = match encoder {
                Some(t) if !config.encoder(t).trainable => return None,
                Some(_) => cfg.encoder_lr_scale,
                None => 1.0,
            };
            let d = decays(&name);
            Some((name, var, d, scale))
        })
        .collect()
}

/// One training step's loss and gradients on a batch (this rank's slice when `coll` is a
/// multi-rank world; see [`crate::train::distributed`]); samples lacking a modality are scored
/// by `cfg.missing`.
pub fn train_step(
    model: &GramModel,
    cfg: &TrainConfig,
    batch: &HostBatch,
    params: &[Var],
    coll: &dyn Collective,
    rng: &mut ChaCha8Rng,
    dev: &Device,
) -> candle_core::Result<(f64, GradStore)> {
    crate::ops::precision::set(cfg.precision);
    let emb = model.embed(&batch.inputs, dev)?;
    step_gradients(model, cfg, &emb, &batch.missing, params, coll, rng)
}
