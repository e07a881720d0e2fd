//! Checkpoints: `weights-<step>.safetensors` (the VarMap), `optimizer-<step>.safetensors`
//! (AdamW moments) and `state.json` (step, configs, RNG description, file names). Each file is
//! written to a temporary name, fsynced and renamed; `state.json` is written last, so it always
//! names a complete checkpoint — a crash at any moment leaves the previous one loadable.

use crate::config::TrainConfig;
use crate::error::Error;
use crate::model::gram::{GramModel, ModelConfig};
use crate::train::build::{Loaded, set_weights, tokenizers_for};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Steps completed.
    pub step: u64,
    pub weights: String,
    pub optimizer: String,
    pub adam_t: u64,
    pub train: TrainConfig,
    pub model: ModelConfig,
    /// How randomness is derived: every step's RNG is ChaCha8 seeded from (seed, step), so the
    /// step count is the whole RNG state.
    pub rng: String,
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| Error::checkpoint(&tmp, e))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Write a checkpoint atomically and delete the files of older ones.
pub fn save(
    dir: &Path,
    state: &CheckpointState,
    weights: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_tensors(&dir.join(&state.weights), weights)?;
    save_tensors(&dir.join(&state.optimizer), optimizer)?;
    let text = serde_json::to_string_pretty(state).expect("serialisable");
    gram_host::output::write_text(&state_path(dir), &text)
        .map_err(|e| Error::checkpoint(&state_path(dir), e))?;
    // Only now are older files unreferenced.
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let ours = name.starts_with("weights-") || name.starts_with("optimizer-");
            if ours && name != state.weights && name != state.optimizer {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

pub fn load_state(dir: &Path) -> Result<CheckpointState, Error> {
    let p = state_path(dir);
    let text = fs::read_to_string(&p)
        .map_err(|e| Error::checkpoint(&p, format!("cannot read checkpoint state: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Error::checkpoint(&p, e))
}

pub fn load_tensors(
    dir: &Path,
    file: &str,
    dev: &Device,
) -> Result<HashMap<String, Tensor>, Error> {
    let p = dir.join(file);
    candle_core::safetensors::load(&p, dev).map_err(|e| Error::checkpoint(&p, e))
}

/// Load a checkpoint: model (weights included) and tokenizers.
pub fn load_checkpoint(checkpoint: &Path, dev: &Device) -> Result<Loaded, Error> {
    let state = load_state(checkpoint)?;
    let varmap = VarMap::new();
    let model = GramModel::new(&state.model, &varmap, 0, dev)?;
    set_weights(&varmap, &load_tensors(checkpoint, &state.weights, dev)?)?;
    let tokenizers = tokenizers_for(&state.model, Some(checkpoint))?;
    Ok(Loaded {
        model,
        varmap,
        tokenizers,
    })
}

/// Load a checkpoint's model (weights included).
pub fn load_model(checkpoint: &Path, dev: &Device) -> Result<GramModel, Error> {
    Ok(load_checkpoint(checkpoint, dev)?.model)
}
