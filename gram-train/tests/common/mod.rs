//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::Tensor;

/// Row-major values of any tensor.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Largest absolute element-wise difference.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    flat(&(a - b).unwrap().abs().unwrap())
        .into_iter()
        .fold(0.0, f32::max)
}

/// `y` and the gradients of Σ y·r with respect to `wrt`.
pub fn value_and_grads(y: &Tensor, r: &Tensor, wrt: &[&Tensor]) -> (Vec<f32>, Vec<Vec<f32>>) {
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    (
        flat(y),
        wrt.iter().map(|t| flat(g.get(t).unwrap())).collect(),
    )
}
