//! The label-smoothed cross-entropy of the losses (`smoothed_ce_offset`) as one CPU op
//! for f32 logits: L = mean_i[(1 − ls)·(lse_i − x_{i,i+offset}) + ls·(lse_i − mean_j x_ij)],
//! lse_i = log Σ_j e^{x_ij}; ∂x_ij = ∂L/b · (softmax_ij − ls/n − (1 − ls)·[j = i + offset]).
//!
//! Why by hand: as Candle ops (log-softmax, one-hot product, means) the two directions of the
//! GRAM loss took ~2.3 ms of the CPU training step at B = 256, the column direction through a
//! transposed copy and strided reductions. Here the logits are read where they lie: row-major
//! or transposed (`logits.t()` of a row-major matrix, the data-to-anchor direction), one pass
//! for the statistics and one for the gradient, exponentials vectorised
//! ([`crate::ops::fastmath::exp_nonpositive`], 3e-7 relative). Sums in f64; the loss equals the
//! Candle-op form to ≤ 1e-6 relative and its gradient to ≤ 1e-6 of the gradient's scale (tests).

use crate::ops::fastmath::{self, exp_nonpositive};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// Where logit (i, j) of a [b, n] matrix lies in its storage.
#[derive(Clone, Copy)]
enum Order {
    /// data[i·n + j]
    Rows,
    /// data[j·b + i] (the transpose of a row-major [n, b])
    Columns,
}

fn order(l: &Layout) -> Result<Option<Order>> {
    let (b, n) = l.shape().dims2()?;
    Ok(match l.stride() {
        [s, 1] if *s == n => Some(Order::Rows),
        [1, s] if *s == b => Some(Order::Columns),
        _ => None,
    })
}

/// Label-smoothed CE of `logits` [b, n] (f32, CPU) against column i + `offset` of row i.
pub fn smoothed_ce(logits: &Tensor, offset: usize, label_smoothing: f64) -> Result<Tensor> {
    let (b, n) = logits.dims2()?;
    if b == 0 || offset + b > n {
        candle_core::bail!("cross-entropy: {b} rows with offset {offset} against {n} columns")
    }
    let logits = match order(logits.layout())? {
        Some(_) => logits.clone(),
        None => logits.contiguous()?,
    };
    logits.apply_op1(SmoothedCe {
        offset,
        ls: label_smoothing,
    })
}

struct SmoothedCe {
    offset: usize,
    ls: f64,
}

/// Per row i: (lse_i, mean_j x_ij, x_{i,i+offset}).
struct Stats {
    lse: Vec<f32>,
    mean: Vec<f64>,
    target: Vec<f64>,
}

impl SmoothedCe {
    fn data<'a>(s: &'a CpuStorage, l: &Layout) -> Result<(&'a [f32], Order, usize, usize)> {
        let (b, n) = l.shape().dims2()?;
        let (CpuStorage::F32(v), Some(order)) = (s, order(l)?) else {
            candle_core::bail!("cross-entropy: needs f32 logits, row-major or transposed")
        };
        Ok((&v[l.start_offset()..][..b * n], order, b, n))
    }

    fn stats(&self, x: &[f32], order: Order, b: usize, n: usize) -> Stats {
        let (mut max, mut sum, mut total) =
            (vec![f32::NEG_INFINITY; b], vec![0f32; b], vec![0f64; b]);
        match order {
            Order::Rows => {
                for (i, row) in x.chunks(n).enumerate() {
                    let m = fastmath::max(row);
                    max[i] = m;
                    sum[i] = fastmath::sum_map(row, |v| exp_nonpositive(v - m));
                    total[i] = row.iter().map(|&v| v as f64).sum();
                }
            }
            Order::Columns => {
                // Storage row j holds logit (i, j) for every i: reduce across storage rows.
                // (Zipped slices: no bounds checks, so the loops vectorise across i.)
                for col in x.chunks(b) {
                    for (m, &v) in max.iter_mut().zip(col) {
                        *m = m.max(v);
                    }
                }
                for col in x.chunks(b) {
                    for ((s, &m), &v) in sum.iter_mut().zip(&max).zip(col) {
                        *s += exp_nonpositive(v - m);
                    }
                    for (t, &v) in total.iter_mut().zip(col) {
                        *t += v as f64;
                    }
                }
            }
        }
        let at = |i: usize, j: usize| match order {
            Order::Rows => x[i * n + j],
            Order::Columns => x[j * b + i],
        };
        Stats {
            lse: (0..b).map(|i| max[i] + sum[i].ln()).collect(),
            mean: total.iter().map(|t| t / n as f64).collect(),
            target: (0..b).map(|i| at(i, i + self.offset) as f64).collect(),
        }
    }
}

impl CustomOp1 for SmoothedCe {
    fn name(&self) -> &'static str {
        "gram-smoothed-ce"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, order, b, n) = Self::data(s, l)?;
        let st = self.stats(x, order, b, n);
        let loss: f64 = (0..b)
            .map(|i| {
                let lse = st.lse[i] as f64;
                (1.0 - self.ls) * (lse - st.target[i]) + self.ls * (lse - st.mean[i])
            })
            .sum::<f64>()
            / b as f64;
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let (s, l) = logits.storage_and_layout();
        let Storage::Cpu(s) = &*s else {
            candle_core::bail!("cross-entropy: CPU logits only")
        };
        let (x, order, b, n) = Self::data(s, l)?;
        let st = self.stats(x, order, b, n);
        let scale = g / b as f32;
        let smooth = (self.ls / n as f64) as f32;
        let hit = (1.0 - self.ls) as f32;
        // The gradient in the logits' own storage order, returned with their layout.
        let mut dx = vec![0f32; b * n];
        match order {
            Order::Rows => {
                for (i, (d, row)) in dx.chunks_mut(n).zip(x.chunks(n)).enumerate() {
                    for (d, &v) in d.iter_mut().zip(row) {
                        *d = scale * (exp_nonpositive(v - st.lse[i]) - smooth);
                    }
                    d[i + self.offset] -= scale * hit;
                }
            }
            Order::Columns => {
                for (j, (d, col)) in dx.chunks_mut(b).zip(x.chunks(b)).enumerate() {
                    for ((d, &v), &lse) in d.iter_mut().zip(col).zip(&st.lse) {
                        *d = scale * (exp_nonpositive(v - lse) - smooth);
                    }
                    if let Some(i) = j.checked_sub(self.offset).filter(|&i| i < b) {
                        d[i] -= scale * hit;
                    }
                }
            }
        }
        let dev = logits.device();
        Ok(Some(match order {
            Order::Rows => Tensor::from_vec(dx, (b, n), dev)?,
            Order::Columns => Tensor::from_vec(dx, (n, b), dev)?.t()?,
        }))
    }
}
