//! Multi-head scaled dot-product attention as one op with its own backward: the FlashAttention
//! algorithm (Dao et al. 2022; FlashAttention-2's loop order in the backward) on the CPU.
//!
//! Why by hand: attention written as Candle tensor ops keeps, for the backward, every
//! intermediate of the graph — the transposed q/k/v copies, the [B, H, T, T] scores before and
//! after scaling and the probabilities — about 14 activations of the layer's width per layer
//! (on a ViT-B/16 at 224², batch 16: 400 MB a layer). This op keeps only its inputs q, k, v (the
//! projections' outputs, kept anyway), its output and one log-sum-exp per query row; scores
//! exist only as one `BLOCK_Q` × `BLOCK_K` tile per thread, and the backward recomputes the
//! probabilities tile by tile. No crate does this for Candle on the CPU with a backward
//! (candle-flash-attn is CUDA, forward-only, f16/bf16).
//!
//! q, k, v and the output are [B, T, H·d] (the projections' own layout: heads are read with a
//! stride, never transposed); the optional key mask [B, T] (1 = token, 0 = padding) adds
//! −10⁹ to a padded key's score (Hugging Face BERT's additive mask), in both forms alike.
//!
//! Accuracy: f32 products accumulated by the `gemm` crate, softmax in f32 with
//! [`fastmath::exp_nonpositive`] (relative error ≤ 3e-7); equal to the tensor-op form within
//! f32 rounding of the same sums (tested in both directions, and against f64).

use crate::ops::cpu_op::{slice, with_host};
use crate::ops::fastmath;
use crate::ops::gemm_cpu::{gemm_f32, into, view};
use crate::ops::precision::{Precision, current, matmul};
use crate::ops::recompute::ternary_recomputed;
use crate::ops::simd::vectorised;
use crate::ops::softmax::softmax_last_dim;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Query rows per tile.
const BLOCK_Q: usize = 64;
/// Key rows per tile: the online softmax rescales the running output once per key tile.
const BLOCK_K: usize = 128;
/// What a padded key adds to its score.
const MASKED: f32 = -1e9;

/// softmax(q·kᵀ/√d + mask)·v per head for q, k, v [B, T, heads·d] → [B, T, heads·d];
/// `key_mask` [B, T] 1 = token, 0 = padding. The fused op for f32 on the CPU at f32 precision;
/// elsewhere [`attention_recomputed`] (the tensor ops, recomputed in the
/// backward: the same memory contract).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    key_mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, t, d) = q.dims3()?;
    if heads == 0 || !d.is_multiple_of(heads) || k.dims3()? != (b, t, d) || v.dims3()? != (b, t, d)
    {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} do not split into {heads} heads",
            q.shape(),
            k.shape(),
            v.shape()
        )
    }
    if let Some(m) = key_mask
        && m.dims2()? != (b, t)
    {
        candle_core::bail!("attention: key mask {:?}, expected ({b}, {t})", m.shape())
    }
    let fused = q.device().is_cpu() && q.dtype() == DType::F32 && current() == Precision::F32;
    if !fused {
        return attention_recomputed(q, k, v, heads, key_mask);
    }
    let bias = match key_mask {
        Some(m) => {
            let m = m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            Some(m.iter().map(|&x| (x - 1.0) * -MASKED).collect())
        }
        None => None,
    };
    let op = FlashAttention {
        heads,
        bias,
        lse: Mutex::new(Vec::new()),
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// The same function from Candle tensor ops (any device and dtype; the fused op's reference).
/// Here q may have fewer rows than k and v ([B, Tq, D] against [B, Tk, D], mask [B, Tk]): the
/// cross-attention of a pooling head.
pub fn attention_ops(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    key_mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, tq, d) = q.dims3()?;
    let t = k.dim(1)?;
    let hd = d / heads;
    let split = |x: &Tensor| -> Result<Tensor> {
        x.reshape((b, x.dim(1)?, heads, hd))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let mut scores = (matmul(&q, &k.t()?.contiguous()?)? / (hd as f64).sqrt())?;
    if let Some(m) = key_mask {
        let add = ((m.to_dtype(scores.dtype())? - 1.0)? * (-MASKED as f64))?;
        scores = scores.broadcast_add(&add.reshape((b, 1, 1, t))?)?;
    }
    let probs = softmax_last_dim(&scores)?;
    matmul(&probs, &v)?.transpose(1, 2)?.reshape((b, tq, d))
}

/// The fused op; `lse` is filled by the forward (one log-sum-exp per (batch, head, query),
/// the only thing the backward needs beyond the inputs and the output).
struct FlashAttention {
    heads: usize,
    bias: Option<Vec<f32>>,
    lse: Mutex<Vec<f32>>,
}

/// One batch element's geometry: T rows of width `d` = heads·`hd`.
#[derive(Clone, Copy)]
struct Geometry {
    t: usize,
    d: usize,
    hd: usize,
    heads: usize,
    scale: f32,
}

impl Geometry {
    fn of(shape: &Shape, heads: usize) -> Result<Geometry> {
        let (_, t, d) = shape.dims3()?;
        let hd = d / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        Ok(Geometry {
            t,
            d,
            hd,
            heads,
            scale,
        })
    }
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "gram-flash-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let what = "attention";
        let (q, k, v) = (
            slice(qs, ql, what)?,
            slice(ks, kl, what)?,
            slice(vs, vl, what)?,
        );
        let g = Geometry::of(ql.shape(), self.heads)?;
        let per = g.t * g.d;
        let mut out = vec![0f32; q.len()];
        let mut lse = vec![0f32; q.len() / g.hd];
        out.par_chunks_mut(per)
            .zip(lse.par_chunks_mut(g.heads * g.t))
            .enumerate()
            .for_each(|(b, (out, lse))| {
                let r = b * per..(b + 1) * per;
                let bias = self.bias.as_ref().map(|m| &m[b * g.t..(b + 1) * g.t]);
                let x = Batch {
                    q: &q[r.clone()],
                    k: &k[r.clone()],
                    v: &v[r],
                    bias,
                    g,
                };
                vectorised(|| {
                    for h in 0..g.heads {
                        x.forward_head(h, out, &mut lse[h * g.t..(h + 1) * g.t]);
                    }
                })
            });
        *self.lse.lock().expect("attention: poisoned lse") = lse;
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let lse = self.lse.lock().expect("attention: poisoned lse");
        let g = Geometry::of(q.shape(), self.heads)?;
        let (dq, dk, dv) = with_host([q, k, v, out, &grad], "attention backward", |x| {
            Ok(backward(x, &lse, self.bias.as_deref(), g))
        })?;
        let back = |x: Vec<f32>| Tensor::from_vec(x, q.shape(), q.device());
        Ok((Some(back(dq)?), Some(back(dk)?), Some(back(dv)?)))
    }
}

/// ∂q, ∂k, ∂v from [q, k, v, out, ∂out] (all [B, T, d]) and the forward's log-sum-exps.
fn backward(
    x: [&[f32]; 5],
    lse: &[f32],
    bias: Option<&[f32]>,
    g: Geometry,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [q, k, v, out, dout] = x;
    let per = g.t * g.d;
    let (mut dq, mut dk, mut dv) = (
        vec![0f32; q.len()],
        vec![0f32; q.len()],
        vec![0f32; q.len()],
    );
    dq.par_chunks_mut(per)
        .zip(dk.par_chunks_mut(per).zip(dv.par_chunks_mut(per)))
        .enumerate()
        .for_each(|(b, (dq, (dk, dv)))| {
            let r = b * per..(b + 1) * per;
            let x = Batch {
                q: &q[r.clone()],
                k: &k[r.clone()],
                v: &v[r.clone()],
                bias: bias.map(|m| &m[b * g.t..(b + 1) * g.t]),
                g,
            };
            let lse = &lse[b * g.heads * g.t..(b + 1) * g.heads * g.t];
            vectorised(|| {
                for h in 0..g.heads {
                    let grads = Grads {
                        dq: &mut *dq,
                        dk: &mut *dk,
                        dv: &mut *dv,
                    };
                    x.backward_head(h, &out[r.clone()], &dout[r.clone()], &lse[h * g.t..], grads);
                }
            })
        });
    (dq, dk, dv)
}

/// One batch element's q, k, v ([T, d] row-major) and key bias.
struct Batch<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    bias: Option<&'a [f32]>,
    g: Geometry,
}

/// One batch element's gradient rows, written head by head.
struct Grads<'a> {
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
}

impl Batch<'_> {
    /// The [rows, cols] score tile s = scale·q[q0..]·k[k0..]ᵀ + bias of head `h`.
    #[inline(always)]
    fn scores(
        &self,
        h: usize,
        (q0, rows): (usize, usize),
        (k0, cols): (usize, usize),
        s: &mut [f32],
    ) {
        let g = self.g;
        let (qh, kh) = (
            &self.q[q0 * g.d + h * g.hd..],
            &self.k[k0 * g.d + h * g.hd..],
        );
        gemm_f32(
            (rows, cols, g.hd),
            into(s, cols, false),
            view(qh, g.d, 1),
            view(kh, 1, g.d),
            g.scale,
        );
        if let Some(bias) = self.bias {
            for row in s[..rows * cols].chunks_mut(cols) {
                for (x, &m) in row.iter_mut().zip(&bias[k0..k0 + cols]) {
                    *x += m;
                }
            }
        }
    }

    /// Head `h`'s output rows (into `out`, [T, d]) and log-sum-exps, by key tiles with the
    /// online softmax: running max m, running sum l, output rescaled by e^(m_old − m_new).
    #[inline(always)]
    fn forward_head(&self, h: usize, out: &mut [f32], lse: &mut [f32]) {
        let g = self.g;
        let mut s = vec![0f32; BLOCK_Q * BLOCK_K];
        let mut acc = vec![0f32; BLOCK_Q * g.hd];
        for q0 in (0..g.t).step_by(BLOCK_Q) {
            let rows = BLOCK_Q.min(g.t - q0);
            let (mut m, mut l) = ([f32::NEG_INFINITY; BLOCK_Q], [0f32; BLOCK_Q]);
            acc.fill(0.0);
            for k0 in (0..g.t).step_by(BLOCK_K) {
                let cols = BLOCK_K.min(g.t - k0);
                self.scores(h, (q0, rows), (k0, cols), &mut s);
                for r in 0..rows {
                    let row = &mut s[r * cols..(r + 1) * cols];
                    let m_new = m[r].max(fastmath::max(row));
                    let keep = fastmath::exp_nonpositive(m[r] - m_new);
                    let mut sum = 0f32;
                    for x in row.iter_mut() {
                        *x = fastmath::exp_nonpositive(*x - m_new);
                        sum += *x;
                    }
                    l[r] = l[r] * keep + sum;
                    m[r] = m_new;
                    acc[r * g.hd..(r + 1) * g.hd]
                        .iter_mut()
                        .for_each(|a| *a *= keep);
                }
                gemm_f32(
                    (rows, g.hd, cols),
                    into(&mut acc, g.hd, true),
                    view(&s, cols, 1),
                    view(&self.v[k0 * g.d + h * g.hd..], g.d, 1),
                    1.0,
                );
            }
            for r in 0..rows {
                let o = &mut out[(q0 + r) * g.d + h * g.hd..][..g.hd];
                for (o, &a) in o.iter_mut().zip(&acc[r * g.hd..(r + 1) * g.hd]) {
                    *o = a / l[r];
                }
                lse[q0 + r] = m[r] + l[r].ln();
            }
        }
    }

    /// Head `h`'s ∂q, ∂k, ∂v (FlashAttention-2's backward): per tile P = e^(s − lse),
    /// ∂v += Pᵀ·∂o, ∂P = ∂o·vᵀ, ∂s = P∘(∂P − rowsum(∂o∘o)), ∂q += scale·∂s·k, ∂k += scale·∂sᵀ·q.
    #[inline(always)]
    fn backward_head(&self, h: usize, out: &[f32], dout: &[f32], lse: &[f32], gr: Grads) {
        let g = self.g;
        let col = h * g.hd;
        let delta: Vec<f32> = (0..g.t)
            .map(|t| {
                let r = t * g.d + col..t * g.d + col + g.hd;
                out[r.clone()]
                    .iter()
                    .zip(&dout[r])
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect();
        let (mut p, mut dp) = (vec![0f32; BLOCK_Q * BLOCK_K], vec![0f32; BLOCK_Q * BLOCK_K]);
        for q0 in (0..g.t).step_by(BLOCK_Q) {
            let rows = BLOCK_Q.min(g.t - q0);
            for k0 in (0..g.t).step_by(BLOCK_K) {
                let cols = BLOCK_K.min(g.t - k0);
                self.scores(h, (q0, rows), (k0, cols), &mut p);
                for r in 0..rows {
                    for x in &mut p[r * cols..(r + 1) * cols] {
                        *x = fastmath::exp_nonpositive((*x - lse[q0 + r]).min(0.0));
                    }
                }
                let dout_i = view(&dout[q0 * g.d + col..], g.d, 1);
                // ∂v[k0..] += Pᵀ·∂o[q0..]
                gemm_f32(
                    (cols, g.hd, rows),
                    into(&mut gr.dv[k0 * g.d + col..], g.d, true),
                    view(&p, 1, cols),
                    dout_i,
                    1.0,
                );
                // ∂P = ∂o·vᵀ, then ∂s = P∘(∂P − δ) in place.
                gemm_f32(
                    (rows, cols, g.hd),
                    into(&mut dp, cols, false),
                    dout_i,
                    view(&self.v[k0 * g.d + col..], 1, g.d),
                    1.0,
                );
                for r in 0..rows {
                    let d = delta[q0 + r];
                    let (pr, dr) = (
                        &p[r * cols..(r + 1) * cols],
                        &mut dp[r * cols..(r + 1) * cols],
                    );
                    for (x, &pv) in dr.iter_mut().zip(pr) {
                        *x = pv * (*x - d);
                    }
                }
                let ds = view(&dp, cols, 1);
                gemm_f32(
                    (rows, g.hd, cols),
                    into(&mut gr.dq[q0 * g.d + col..], g.d, true),
                    ds,
                    view(&self.k[k0 * g.d + col..], g.d, 1),
                    g.scale,
                );
                gemm_f32(
                    (cols, g.hd, rows),
                    into(&mut gr.dk[k0 * g.d + col..], g.d, true),
                    view(&dp, 1, cols),
                    view(&self.q[q0 * g.d + col..], g.d, 1),
                    g.scale,
                );
            }
        }
    }
}

/// softmax(q·kᵀ/√d + mask)·v per head, keeping for the backward only q, k, v and the output.
pub fn attention_recomputed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    key_mask: Option<&Tensor>,
) -> Result<Tensor> {
    let mask = key_mask.map(Tensor::detach);
    ternary_recomputed(q, k, v, move |q, k, v| {
        attention_ops(q, k, v, heads, mask.as_ref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Output and ∂q, ∂k, ∂v of `f` for the loss Σ out∘w (a fixed random weighting, so every
    /// output element's gradient differs), in f64 whatever the dtype.
    fn run(
        f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
        x: &[Var; 3],
        w: &Tensor,
    ) -> Vec<Vec<f64>> {
        let out = f(x[0].as_tensor(), x[1].as_tensor(), x[2].as_tensor()).unwrap();
        let grads = (&out * w.to_dtype(out.dtype()).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let flat = |t: &Tensor| {
            t.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        let mut all = vec![flat(&out)];
        all.extend(x.iter().map(|v| flat(grads.get(v.as_tensor()).unwrap())));
        all
    }

    fn max_rel(a: &[f64], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-30);
        a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// The fused op against the tensor-op form in f32 and in f64 (values and every input
    /// gradient), over sizes that are and are not multiples of the tiles, several head widths,
    /// with and without a padding mask (one sample padded to a single token).
    #[test]
    fn equals_the_tensor_ops_in_both_directions() {
        let dev = Device::Cpu;
        for &(b, t, heads, hd, masked) in &[
            (2, 7, 2, 8, false),
            (3, 37, 4, 12, true),
            (2, 197, 3, 64, false),
            (2, 130, 12, 32, true),
        ] {
            let d = heads * hd;
            let x: [Var; 3] =
                std::array::from_fn(|_| Var::randn(0f32, 1.0, (b, t, d), &dev).unwrap());
            let w = Tensor::randn(0f32, 1.0, (b, t, d), &dev).unwrap();
            let mask = masked.then(|| {
                let m: Vec<f32> = (0..b * t)
                    .map(|i| f32::from(i % t < [t, t / 2, 1][(i / t) % 3]))
                    .collect();
                Tensor::from_vec(m, (b, t), &dev).unwrap()
            });
            let fused = run(|q, k, v| attention(q, k, v, heads, mask.as_ref()), &x, &w);
            let ops32 = run(
                |q, k, v| attention_ops(q, k, v, heads, mask.as_ref()),
                &x,
                &w,
            );
            let x64: [Var; 3] = std::array::from_fn(|i| {
                Var::from_tensor(&x[i].to_dtype(DType::F64).unwrap()).unwrap()
            });
            let ops64 = run(
                |q, k, v| attention_ops(q, k, v, heads, mask.as_ref()),
                &x64,
                &w,
            );
            for (i, name) in ["out", "dq", "dk", "dv"].iter().enumerate() {
                let (e32, e64) = (max_rel(&fused[i], &ops32[i]), max_rel(&fused[i], &ops64[i]));
                let base = max_rel(&ops32[i], &ops64[i]);
                assert!(
                    e64 <= 4.0 * base.max(1e-6) && e32 <= 8.0 * base.max(1e-6),
                    "{name} b{b} t{t} h{heads} d{hd} mask {masked}: fused vs f32 ops {e32:e}, vs \
                     f64 {e64:e}, f32 ops vs f64 {base:e}"
                );
            }
        }
    }

    /// Padded keys get no weight and no gradient: changing them changes nothing.
    #[test]
    fn padded_keys_do_not_matter() {
        let dev = Device::Cpu;
        let (b, t, heads, hd) = (2, 9, 2, 4);
        let q = Tensor::randn(0f32, 1.0, (b, t, heads * hd), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, t, heads * hd), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, t, heads * hd), &dev).unwrap();
        let m: Vec<f32> = (0..b * t).map(|i| f32::from(i % t < 5)).collect();
        let mask = Tensor::from_vec(m.clone(), (b, t), &dev).unwrap();
        let keep = Tensor::from_vec(m, (b, t, 1), &dev).unwrap();
        let noise = Tensor::randn(0f32, 100.0, (b, t, heads * hd), &dev).unwrap();
        let changed = |x: &Tensor| {
            (x.broadcast_mul(&keep).unwrap()
                + noise.broadcast_mul(&(1.0 - &keep).unwrap()).unwrap())
            .unwrap()
        };
        let a = attention(&q, &k, &v, heads, Some(&mask)).unwrap();
        let c = attention(&q, &changed(&k), &changed(&v), heads, Some(&mask)).unwrap();
        let diff = (a - c)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    /// Bad shapes are errors, not panics.
    #[test]
    fn refuses_shapes_that_do_not_fit() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 5, 12), DType::F32, &dev).unwrap();
        let y = Tensor::zeros((2, 4, 12), DType::F32, &dev).unwrap();
        assert!(attention(&x, &x, &x, 5, None).is_err());
        assert!(attention(&x, &y, &x, 3, None).is_err());
        let m = Tensor::ones((2, 4), DType::F32, &dev).unwrap();
        assert!(attention(&x, &x, &x, 3, Some(&m)).is_err());
    }

    /// Values and ∂q, ∂k, ∂v equal the tensor-op form's (f64, so the path any non-f32 dtype
    /// takes on the CPU, and CUDA's), with and without a padding mask; the op runs once per
    /// forward and the gradients carry no graph.
    #[test]
    fn recomputed_equals_the_tensor_ops_and_keeps_no_graph() {
        let dev = Device::Cpu;
        let (b, t, heads, hd) = (2, 11, 3, 4);
        let x: [Var; 3] =
            std::array::from_fn(|_| Var::randn(0f64, 1.0, (b, t, heads * hd), &dev).unwrap());
        let w = Tensor::randn(0f64, 1.0, (b, t, heads * hd), &dev).unwrap();
        let m: Vec<f64> = (0..b * t)
            .map(|i| f64::from(u8::from(i % t < 6 || i < t)))
            .collect();
        let mask = Tensor::from_vec(m, (b, t), &dev).unwrap();
        for mask in [None, Some(&mask)] {
            let ours = run(|q, k, v| attention_recomputed(q, k, v, heads, mask), &x, &w);
            let ops = run(|q, k, v| attention_ops(q, k, v, heads, mask), &x, &w);
            for (a, b) in ours.iter().zip(&ops) {
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                assert!(worst <= 1e-12, "differs by {worst}");
            }
        }
        let out = attention_recomputed(
            x[0].as_tensor(),
            x[1].as_tensor(),
            x[2].as_tensor(),
            heads,
            None,
        )
        .unwrap();
        let grads = out.sum_all().unwrap().backward().unwrap();
        for v in &x {
            assert!(!grads.get(v.as_tensor()).unwrap().track_op());
        }
        assert_eq!(out.dtype(), DType::F64);
    }
}
