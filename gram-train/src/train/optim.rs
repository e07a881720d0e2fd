//! AdamW with decoupled weight decay per parameter, a warmup + cosine schedule, and global
//! gradient-norm clipping. Hand-written because Candle's `AdamW` keeps its moments private and
//! so cannot be checkpointed and resumed exactly; the update is the one of Loshchilov & Hutter
//! (and of `torch.optim.AdamW`).

use crate::ops::cpu_op::{slice, slice_mut};
use crate::ops::simd::vectorised;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

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

impl Param {
    /// The same update as the tensor-op path, in one pass over the parameter, its moments and
    /// its gradient where they lie (CPU, f32, contiguous): no copies, no allocation. Three
    /// storages are written at once by nesting Candle's in-place ops (θ, then m, then v with g),
    /// each lending its slice to the next; the innermost runs the loop.
    fn step_cpu(
        &mut self,
        g: &Tensor,
        c: &AdamWConfig,
        lr: f64,
        grad_scale: f64,
        (bc1, bc2): (f64, f64),
    ) -> Result<()> {
        let lr = lr * self.lr_scale;
        let k = Coefficients {
            decay: if self.decay {
                (1.0 - lr * c.weight_decay) as f32
            } else {
                1.0
            },
            b1: c.beta1 as f32,
            b2: c.beta2 as f32,
            eps: c.eps as f32,
            scale: grad_scale as f32,
            inv_bc1: (1.0 / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            lr: lr as f32,
        };
        let g = g.contiguous()?;
        let outer = OnTheta {
            m: &self.m,
            v: &self.v,
            g: &g,
            k,
        };
        self.var.as_tensor().inplace_op1(&outer)
    }
}

/// Σ g² in f64: read in place for a contiguous f32 tensor on the CPU (fixed chunks, so the
/// sum is the same whatever the thread count), else by tensor ops.
fn sum_of_squares(g: &Tensor) -> Result<f64> {
    use rayon::prelude::*;
    if g.device().is_cpu() && g.dtype() == candle_core::DType::F32 && g.is_contiguous() {
        let (storage, layout) = g.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            let x = slice::<f32>(cpu, layout, "grad_norm")?;
            let parts: Vec<f64> = x
                .par_chunks(1 << 14)
                .map(|c| c.iter().map(|&v| v as f64 * v as f64).sum())
                .collect();
            return Ok(parts.iter().sum());
        }
    }
    g.sqr()?
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()
}

/// One AdamW update's constants, in f32.
#[derive(Clone, Copy)]
struct Coefficients {
    decay: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    scale: f32,
    inv_bc1: f32,
    inv_bc2: f32,
    lr: f32,
}

impl Coefficients {
    /// θ, m, v updated from g, element by element, on every core (fixed chunks: the same
    /// result whatever the thread count, as each element is independent).
    fn apply(&self, th: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 14;
        let k = *self;
        th.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((th, m), v), g)| {
                vectorised(|| {
                    for i in 0..th.len() {
                        let gi = g[i] * k.scale;
                        m[i] = m[i] * k.b1 + gi * (1.0 - k.b1);
                        v[i] = v[i] * k.b2 + gi * gi * (1.0 - k.b2);
                        let update = (m[i] * k.inv_bc1) / ((v[i] * k.inv_bc2).sqrt() + k.eps);
                        th[i] = th[i] * k.decay - update * k.lr;
                    }
                })
            });
    }
}

/// Writes θ: lends its slice to [`OnMoment`].
struct OnTheta<'a> {
    m: &'a Tensor,
    v: &'a Tensor,
    g: &'a Tensor,
    k: Coefficients,
}

/// Writes m: lends it and θ to [`OnSecondMoment`].
struct OnMoment<'a, 'b> {
    theta: Mutex<&'b mut [f32]>,
    v: &'a Tensor,
    g: &'a Tensor,
    k: Coefficients,
}

/// Writes v, reads g: runs the update.
struct OnSecondMoment<'b> {
    theta: Mutex<&'b mut [f32]>,
    m: Mutex<&'b mut [f32]>,
    k: Coefficients,
}

impl InplaceOp1 for OnTheta<'_> {
    fn name(&self) -> &'static str {
        "adamw-theta"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let theta = slice_mut(s, l, self.name())?;
        self.m.inplace_op1(&OnMoment {
            theta: Mutex::new(theta),
            v: self.v,
            g: self.g,
            k: self.k,
        })
    }
}

impl InplaceOp1 for OnMoment<'_, '_> {
    fn name(&self) -> &'static str {
        "adamw-m"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let m = slice_mut(s, l, self.name())?;
        let mut theta = self.theta.lock().unwrap_or_else(|e| e.into_inner());
        self.v.inplace_op2(
            self.g,
            &OnSecondMoment {
                theta: Mutex::new(&mut theta),
                m: Mutex::new(m),
                k: self.k,
            },
        )
    }
}

impl InplaceOp2 for OnSecondMoment<'_> {
    fn name(&self) -> &'static str {
        "adamw-v"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<()> {
        let v = slice_mut(s, l, self.name())?;
        let g = slice::<f32>(gs, gl, self.name())?;
        let mut theta = self.theta.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = self.m.lock().unwrap_or_else(|e| e.into_inner());
        if [theta.len(), m.len(), v.len()] != [g.len(); 3] {
            candle_core::bail!(
                "adamw: parameter {}, moments {} and {}, gradient {} differ in size",
                theta.len(),
                m.len(),
                v.len(),
                g.len()
            )
        }
        self.k.apply(&mut theta, &mut m, v, g);
        Ok(())
    }
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
                sq += sum_of_squares(g)?;
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
            let fused = p.var.device().is_cpu()
                && [p.var.dtype(), g.dtype(), p.m.dtype(), p.v.dtype()]
                    .iter()
                    .all(|&d| d == candle_core::DType::F32);
            if fused {
                p.step_cpu(g, &c, lr, grad_scale, (bc1, bc2))?;
                continue;
            }
            // Detached: a gradient carries the op graph of its step (every activation); moments
            // built from it without detaching would chain every step's graph to the next and
            // keep them all alive (on a GPU: out of memory after a few hundred steps).
            let g = (g.detach() * grad_scale)?;
            p.m = ((&p.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?.detach();
            p.v = ((&p.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?.detach();
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

    /// The tests' AdamW: lr 0.1, the usual betas and ε, weight decay `wd`.
    fn config(wd: f64) -> AdamWConfig {
        AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: wd,
        }
    }
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
    fn fused_cpu_step_equals_the_tensor_op_step() {
        // The tensor-op path runs on f64 parameters; the fused one on f32: same updates.
        let dev = Device::Cpu;
        let init: Vec<f64> = (0..1000)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 40.0)
            .collect();
        let run = |dtype: candle_core::DType| {
            let w = Var::from_tensor(
                &Tensor::from_vec(init.clone(), (10, 100), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let cfg = AdamWConfig {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.1,
            };
            let mut opt = AdamW::new(vec![("w".into(), w.clone(), true, 0.5)], cfg).unwrap();
            for _ in 0..5 {
                let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap()
                    + w.as_tensor().sin().unwrap().sum_all().unwrap())
                .unwrap();
                let grads = loss.backward().unwrap();
                opt.step(&grads, 0.01, 0.7).unwrap();
            }
            w.as_tensor()
                .to_dtype(candle_core::DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        let (fused, reference) = (run(candle_core::DType::F32), run(candle_core::DType::F64));
        for (a, b) in fused.iter().zip(&reference) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(fused.iter().zip(&init).any(|(a, b)| (a - b).abs() > 1e-3));
    }

    #[test]
    fn grad_norm_reads_f32_gradients_in_place_and_agrees_with_f64() {
        let dev = Device::Cpu;
        let vals: Vec<f32> = (0..40_000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3)
            .collect();
        let want = vals
            .iter()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        for dtype in [candle_core::DType::F32, candle_core::DType::F64] {
            let w = Var::from_tensor(
                &Tensor::from_vec(vals.clone(), vals.len(), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            // d/dw of Σ w²/2 is w itself.
            let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            let grads = loss.backward().unwrap();
            let cfg = config(0.0);
            let opt = AdamW::new(vec![("w".into(), w, true, 1.0)], cfg).unwrap();
            let got = opt.grad_norm(&grads).unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want,
                "{dtype:?}: {got} vs {want}"
            );
        }
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
        let cfg = config(0.5);
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

    /// The tensor-op path (any device but the fused CPU one; here f64 on the CPU) keeps no op
    /// graph in its moments: otherwise each step's activations stay alive through them.
    #[test]
    fn tensor_op_step_keeps_no_graph_in_its_state() {
        let dev = Device::Cpu;
        let w = Var::from_vec(vec![1.0f64, -2.0, 0.5], 3, &dev).unwrap();
        let x = Tensor::from_vec(vec![0.3f64, 0.1, -0.7], 3, &dev).unwrap();
        let cfg = config(0.1);
        let mut opt = AdamW::new(vec![("w".into(), w.clone(), true, 1.0)], cfg).unwrap();
        for _ in 0..3 {
            let loss = (w.as_tensor() * &x)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.1, 1.0).unwrap();
        }
        for (name, t) in opt.state_tensors() {
            assert!(!t.track_op(), "{name} keeps an op graph");
        }
    }
}
