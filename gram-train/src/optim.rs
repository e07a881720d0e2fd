//! AdamW with decoupled weight decay per parameter, a warmup + cosine schedule, and global
//! gradient-norm clipping. Hand-written because Candle's `AdamW` keeps its moments private and
//! so cannot be checkpointed and resumed exactly; the update is the one of Loshchilov & Hutter
//! (and of `torch.optim.AdamW`).

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

struct Param {
    name: String,
    var: Var,
    decay: bool,
    /// Multiplies the step's learning rate (encoders train slower than heads).
    lr_scale: f64,
    m: Tensor,
    v: Tensor,
}

pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<Param>,
    /// Updates taken so far (for bias correction).
    pub t: u64,
}

impl AdamW {
    /// `params`: (name, variable, whether weight decay applies, learning-rate scale), in a
    /// stable order.
    pub fn new(params: Vec<(String, Var, bool, f64)>, cfg: AdamWConfig) -> Result<AdamW> {
        let params = params
            .into_iter()
            .map(|(name, var, decay, lr_scale)| {
                let m = var.zeros_like()?;
                let v = var.zeros_like()?;
                Ok(Param {
                    name,
                    var,
                    decay,
                    lr_scale,
                    m,
                    v,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW { cfg, params, t: 0 })
    }

    /// Global L2 norm of the gradients of our parameters.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0.0f64;
        for p in &self.params {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                sq += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        Ok(sq.sqrt())
    }

    /// One update at learning rate `lr`, gradients multiplied by `grad_scale` (clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.t += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let g = (g * grad_scale)?;
            p.m = ((&p.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            p.v = ((&p.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&p.m / bc1)? / ((&p.v / bc2)?.sqrt()? + c.eps)?)?;
            let lr = lr * p.lr_scale;
            let mut theta = p.var.as_tensor().clone();
            if p.decay {
                theta = (theta * (1.0 - lr * c.weight_decay))?;
            }
            p.var.set(&(theta - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Moments by name (`m.<param>`, `v.<param>`), for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for p in &self.params {
            out.insert(format!("m.{}", p.name), p.m.clone());
            out.insert(format!("v.{}", p.name), p.v.clone());
        }
        out
    }

    /// Restore moments saved by [`AdamW::state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        for p in &mut self.params {
            let get = |k: String| {
                tensors
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state has no {k}")))
            };
            p.m = get(format!("m.{}", p.name))?.to_device(p.var.device())?;
            p.v = get(format!("v.{}", p.name))?.to_device(p.var.device())?;
        }
        self.t = t;
        Ok(())
    }
}

/// Linear warmup over `warmup` steps, then cosine decay to `final_frac·base` at `total`.
pub fn learning_rate(step: u64, base: f64, warmup: u64, total: u64, final_frac: f64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    base * (final_frac + (1.0 - final_frac) * cosine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_shape() {
        assert!((learning_rate(0, 1.0, 10, 100, 0.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 1.0, 10, 100, 0.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(10, 1.0, 10, 100, 0.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(55, 1.0, 10, 100, 0.0) - 0.5).abs() < 1e-12);
        assert!(learning_rate(100, 1.0, 10, 100, 0.1) - 0.1 < 1e-12);
    }

    #[test]
    fn first_step_matches_the_adamw_formula() {
        // After one step, m̂ = g and v̂ = g², so θ ← θ(1 − lr·wd) − lr·g/(|g| + ε).
        let dev = Device::Cpu;
        let w = Var::from_vec(vec![1.0f32, -2.0], 2, &dev).unwrap();
        let b = Var::from_vec(vec![0.5f32], 1, &dev).unwrap();
        let loss = ((w.as_tensor().sqr().unwrap().sum_all().unwrap() * 3.0).unwrap()
            + b.as_tensor().sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let mut opt = AdamW::new(
            vec![
                ("w".into(), w.clone(), true, 1.0),
                ("b".into(), b.clone(), false, 1.0),
            ],
            cfg,
        )
        .unwrap();
        opt.step(&grads, 0.1, 1.0).unwrap();
        let w1 = w.as_tensor().to_vec1::<f32>().unwrap();
        assert!((w1[0] - (1.0 * 0.95 - 0.1)).abs() < 1e-6, "{w1:?}");
        assert!((w1[1] - (-2.0 * 0.95 + 0.1)).abs() < 1e-6, "{w1:?}");
        let b1 = b.as_tensor().to_vec1::<f32>().unwrap();
        assert!((b1[0] - (0.5 - 0.1)).abs() < 1e-6, "no decay on b: {b1:?}");
    }
}
