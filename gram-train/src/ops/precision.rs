//! Matmul precision for the encoders and heads (`--precision f32|bf16`), like PyTorch's
//! autocast: with bf16, the matmuls of [`Linear`] layers and attention ([`matmul`]) take bf16
//! operands (tensor cores on GPUs) and return f32; parameters, AdamW's state, LayerNorm,
//! softmax, the volume matrix and the losses stay f32 (or f64). Gradients flow through the
//! casts in f32 to the f32 master weights.
//!
//! The setting belongs to the calling thread (as autocast is a context, not a property of each
//! layer): [`set`] on the thread that runs the step (`fit` does, on every rank). Default f32.

use candle_core::{DType, Module, Result, Tensor};
use std::cell::Cell;

/// Operand precision of the encoders' and heads' matmuls.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

thread_local! {
    static BF16: Cell<bool> = const { Cell::new(false) };
}

/// Sets this thread's matmul precision.
pub fn set(p: Precision) {
    BF16.with(|b| b.set(p == Precision::Bf16));
}

/// This thread's matmul precision.
pub fn current() -> Precision {
    if BF16.with(Cell::get) {
        Precision::Bf16
    } else {
        Precision::F32
    }
}

/// `a.matmul(b)` (with broadcasting over leading dimensions) at the current precision; the
/// result has `a`'s dtype.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if current() == Precision::Bf16 && a.dtype() == DType::F32 {
        a.to_dtype(DType::BF16)?
            .broadcast_matmul(&b.to_dtype(DType::BF16)?)?
            .to_dtype(DType::F32)
    } else {
        a.broadcast_matmul(b)
    }
}

/// y = x·Wᵀ + b with the matmul at the current precision (the bias added in f32).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Linear {
        Linear { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Linear {
    /// x [..., in] → [..., out]. Leading dimensions are flattened into one GEMM (candle-nn's
    /// Linear broadcasts W over them instead, and its backward then materialises one
    /// [in, out] gradient per batch row before summing them). In f32 on the CPU one op
    /// ([`crate::ops::linear_cpu`]); elsewhere Candle's matmul and broadcast add.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let rows = x.flatten_to(dims.len().saturating_sub(2))?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank ≥ 1") = self.weight.dim(0)?;
        if current() == Precision::F32
            && rows.device().is_cpu()
            && rows.dtype() == DType::F32
            && self.weight.dtype() == DType::F32
        {
            return crate::ops::linear_cpu::linear(&rows, &self.weight, self.bias.as_ref())?
                .reshape(out_dims);
        }
        let y = matmul(&rows, &self.weight.t()?)?.reshape(out_dims)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// A [`Linear`] with candle-nn's initialisation and parameter names (`weight`, `bias`).
pub fn linear(inp: usize, out: usize, vb: candle_nn::VarBuilder) -> Result<Linear> {
    let l = candle_nn::linear(inp, out, vb)?;
    Ok(Linear::new(l.weight().clone(), l.bias().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// bf16 operands: within bf16's rounding (2^-8 relative per operand, accumulated in f32)
    /// of the f32 result, and gradients reach the f32 weight.
    #[test]
    fn bf16_linear_is_close_to_f32_and_trains_its_f32_weight() {
        let dev = Device::Cpu;
        let w = Var::randn(0f32, 0.05, (64, 128), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (8, 128), &dev).unwrap();
        let l = Linear::new(w.as_tensor().clone(), None);
        let y32 = l.forward(&x).unwrap();
        set(Precision::Bf16);
        // Reset the flag before any assertion can fail.
        let run = l.forward(&x).and_then(|y| {
            let g = y.sqr()?.sum_all()?.backward()?;
            Ok((y, g))
        });
        set(Precision::F32);
        let (y16, g) = run.unwrap();
        assert_eq!(y16.dtype(), DType::F32);
        let max_abs = |t: &Tensor| t.abs()?.max_all()?.to_scalar::<f32>();
        let err = max_abs(&(&y16 - &y32).unwrap()).unwrap();
        let scale = max_abs(&y32).unwrap();
        assert!(err <= 2e-2 * scale && err > 0.0, "{err} of {scale}");
        let gw = g.get(w.as_tensor()).unwrap().clone();
        assert_eq!(gw.dtype(), DType::F32);
        assert!(
            gw.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }
}
