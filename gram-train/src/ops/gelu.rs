//! Exact (erf) GELU, y = x·Φ(x) = ½x(1 + erf(x/√2)), for the heads, the DAM head and BERT;
//! and CLIP's quick GELU, y = x·σ(1.702x), for its vision tower.
//!
//! On the CPU in f32 each is one op with a fused backward, ∂x = ∂y·(Φ(x) + x·φ(x)) (erf) or
//! ∂y·(σ + 1.702x·σ(1 − σ)) (quick), one pass each way, keeping only x for the backward
//! (quick GELU as tensor ops keeps 1.702x, σ and the product: three more activations of the
//! MLP's width per layer). Why by hand: Candle's `gelu_erf` backward is a chain of ten element-wise tensor
//! ops (each allocating its output), about a tenth of the CPU training step's backward pass at
//! the issue-11 sizes. Elsewhere (CUDA, other dtypes) it is Candle's `gelu_erf`.
//!
//! Accuracy (f32, tested against an f64 reference on [−10, 10]): y within 2.5e-7·|x| + 4 ulp
//! ([`crate::ops::fastmath::erf`], 5e-7 absolute, where Candle calls libm's `erff`); ∂x within
//! 1e-6 absolute of the exact derivative (Candle's backward rounds 1/√(2π) to 0.398942).

use crate::ops::cpu_op::{slice, with_host};
use crate::ops::fastmath::{erf, exp_nonpositive};
use crate::ops::recompute::unary_recomputed;
use crate::ops::simd::vectorised;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// GELU (erf form) of `x`, differentiable.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.dtype() == DType::F32 && x.device().is_cpu() {
        x.contiguous()?.apply_op1(GeluOp(Form::Erf))
    } else {
        x.gelu_erf()
    }
}

/// Quick GELU, x·σ(1.702x), differentiable (CLIP's `quick_gelu`).
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if x.dtype() == DType::F32 && x.device().is_cpu() {
        x.contiguous()?.apply_op1(GeluOp(Form::Quick))
    } else {
        unary_recomputed(x, |x| x.mul(&candle_nn::ops::sigmoid(&(x * QUICK)?)?))
    }
}

/// Quick GELU's slope inside the sigmoid (f64: the tensor-op form uses it at full precision).
const QUICK: f64 = 1.702;

#[derive(Clone, Copy)]
enum Form {
    Erf,
    Quick,
}

impl Form {
    #[inline(always)]
    fn value(self, x: f32) -> f32 {
        match self {
            Form::Erf => x * cdf(x),
            Form::Quick => x * sigmoid(QUICK as f32 * x),
        }
    }

    #[inline(always)]
    fn slope(self, x: f32) -> f32 {
        match self {
            Form::Erf => slope(x),
            Form::Quick => {
                let s = sigmoid(QUICK as f32 * x);
                s + QUICK as f32 * x * s * (1.0 - s)
            }
        }
    }
}

struct GeluOp(Form);

/// σ(z) = 1/(1 + e^−z) from e^−|z| (never overflows; relative error ≤ 1e-6).
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    let e = exp_nonpositive(-z.abs());
    let s = 1.0 / (1.0 + e);
    if z >= 0.0 { s } else { e * s }
}

/// Φ(x), the standard normal CDF (absolute error ≤ 2.5e-7).
#[inline(always)]
fn cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Φ(x) + x·φ(x), the derivative of x·Φ(x).
#[inline(always)]
fn slope(x: f32) -> f32 {
    // 1/√(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    cdf(x) + x * INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x)
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        match self.0 {
            Form::Erf => "gram-gelu-erf",
            Form::Quick => "gram-quick-gelu",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s, l, "gelu")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                vectorised(|| match self.0 {
                    // One loop per form: a `match` per element keeps LLVM from vectorising.
                    Form::Erf => y
                        .iter_mut()
                        .zip(x)
                        .for_each(|(y, &x)| *y = Form::Erf.value(x)),
                    Form::Quick => y
                        .iter_mut()
                        .zip(x)
                        .for_each(|(y, &x)| *y = Form::Quick.value(x)),
                })
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let dx = with_host([x, &grad], "gelu backward", |[x_host, g]| {
            let mut dx = vec![0f32; x_host.len()];
            dx.par_chunks_mut(CHUNK)
                .zip(x_host.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
                .for_each(|(dx, (x, g))| {
                    let mut run = |form: Form| {
                        for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                            *dx = g * form.slope(x);
                        }
                    };
                    vectorised(|| match self.0 {
                        Form::Erf => run(Form::Erf),
                        Form::Quick => run(Form::Quick),
                    })
                });
            Ok(dx)
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn reference(x: f64) -> (f64, f64) {
        let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        (x * cdf, cdf + x * pdf)
    }

    /// Values and gradients against the f64 reference over [−10, 10] (both tails included),
    /// and equal to Candle's `gelu_erf` within its rounding.
    #[test]
    fn matches_the_f64_reference_and_candle() {
        let xs: Vec<f32> = (0..40_001).map(|i| -10.0 + i as f32 * 5e-4).collect();
        let x = Var::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
        let y = gelu_erf(x.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let ys = y.to_vec1::<f32>().unwrap();
        let candle = x.as_tensor().gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        for (i, &xi) in xs.iter().enumerate() {
            let (want_y, want_d) = reference(xi as f64);
            let ulp = f32::EPSILON as f64 * want_y.abs();
            assert!(
                (ys[i] as f64 - want_y).abs() <= 4.0 * ulp + 2.5e-7 * (xi.abs() as f64),
                "y({xi}) = {} vs {want_y}",
                ys[i]
            );
            assert!(
                (dx[i] as f64 - want_d).abs() <= 1e-6,
                "y'({xi}) = {} vs {want_d}",
                dx[i]
            );
            assert!((ys[i] - candle[i]).abs() <= 2.5e-6 * (1.0 + ys[i].abs()));
        }
    }

    /// Quick GELU: values (relative error ≤ 1e-6 + |1.702x|·6e-8) and gradients (1e-6 absolute)
    /// against f64 over [−20, 20] (both tails) and equal to
    /// the tensor-op form x·σ(1.702x) within f32 rounding.
    #[test]
    fn quick_gelu_matches_the_f64_reference_and_the_tensor_ops() {
        let xs: Vec<f32> = (0..40_001).map(|i| -20.0 + i as f32 * 1e-3).collect();
        let x = Var::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
        let y = quick_gelu(x.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let ys = y.to_vec1::<f32>().unwrap();
        let t = x.as_tensor();
        let ops = t
            .mul(&candle_nn::ops::sigmoid(&(t * 1.702).unwrap()).unwrap())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (i, &xi) in xs.iter().enumerate() {
            let x64 = xi as f64;
            let s = 1.0 / (1.0 + (-1.702 * x64).exp());
            let (want_y, want_d) = (x64 * s, s + 1.702 * x64 * s * (1.0 - s));
            // Rounding 1.702x to f32 moves e^−1.702x by up to |1.702x|·2^-24 relative.
            let rel = 1e-6 + 1.702 * x64.abs() * 6e-8;
            assert!(
                (ys[i] as f64 - want_y).abs() <= rel * want_y.abs() + 1e-30,
                "y({xi}) = {} vs {want_y}",
                ys[i]
            );
            assert!(
                (dx[i] as f64 - want_d).abs() <= 2e-6,
                "y'({xi}) = {} vs {want_d}",
                dx[i]
            );
            assert!((ys[i] - ops[i]).abs() <= 4e-6 * (1.0 + ys[i].abs()));
        }
    }

    /// Quick GELU through `gelu::quick_gelu` in f64 (the recomputed path): values and gradient
    /// equal the three tensor ops'.
    #[test]
    fn quick_gelu_recomputed_equals_its_tensor_ops() {
        let x = candle_core::Var::randn(0f64, 3.0, (5, 7), &candle_core::Device::Cpu).unwrap();
        let ops = |x: &Tensor| x.mul(&candle_nn::ops::sigmoid(&(x * 1.702).unwrap()).unwrap());
        let ours = quick_gelu(x.as_tensor()).unwrap();
        let want = ops(x.as_tensor()).unwrap();
        let g1 = ours.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = want.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let d = |a: Vec<f64>, b: Vec<f64>| {
            a.iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max)
        };
        assert!(d(flat(&ours), flat(&want)) <= 1e-15);
        let (ga, gb) = (
            g1.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
        );
        assert!(d(flat(ga), flat(gb)) <= 1e-13);
    }
}
