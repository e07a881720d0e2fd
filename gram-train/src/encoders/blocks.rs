//! Transformer building blocks for the encoders, differentiable end to end.
//!
//! Why not candle-transformers' BERT and CLIP: candle-nn 0.11's `LayerNorm` takes a fused
//! kernel without a backward pass whenever its input is contiguous (huggingface/candle#2977,
//! #3011), so every parameter below a LayerNorm silently gets no gradient — encoders would
//! "train" frozen. Here LayerNorm is a fused CPU op with its own backward (tensor ops on
//! other devices) and softmax is built from differentiable ops; Hugging Face's parameter
//! names are kept (pretrained folders load unchanged), and `tests/encoders.rs` checks that
//! every parameter receives a gradient and that the fused op matches the tensor-op version in
//! both directions.

use crate::cpu_op::slice;
use crate::precision::{Linear, linear, matmul};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, D, DType, Layout, Module, Result, Shape, Tensor,
};
use candle_nn::{VarBuilder, init::Init};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// LayerNorm over the last dimension: (x − mean)/sqrt(var + eps)·weight + bias.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused_here(x) {
            // One fused pass each way instead of nine allocating tensor ops (whose outputs
            // the backward pass would keep: on a ViT-B that is most of the GPU's memory).
            return x.contiguous()?.apply_op3(
                &self.weight,
                &self.bias,
                LayerNormOp { eps: self.eps },
            );
        }
        self.forward_ops(x)
    }

    /// The same function from differentiable tensor ops (any device; the CPU op's reference).
    pub fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Where the fused LayerNorm and softmax run: f32 on the CPU (our loops) or on CUDA
/// (candle-kernels' row kernels, the ones candle-nn's no-backward ops launch).
fn fused_here(x: &Tensor) -> bool {
    x.dtype() == DType::F32 && (x.device().is_cpu() || x.device().is_cuda())
}

/// LayerNorm over rows of a contiguous f32 tensor (CPU, or CUDA via candle-kernels), with its
/// backward (on the CPU a fused loop, on a GPU tensor ops over the recomputed x̂):
/// x̂ = (x − μ)·r, r = 1/sqrt(σ² + eps); y = x̂·w + b;
/// ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = ∂y·w; ∂w = Σ ∂y·x̂; ∂b = Σ ∂y.
struct LayerNormOp {
    eps: f64,
}

/// Mean and 1/std of a row (two passes in f64: rows are short, accuracy is cheap).
fn row_stats(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "gram-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            slice::<f32>(xs, xl, "layer norm / softmax")?,
            slice::<f32>(ws, wl, "layer norm / softmax")?,
            slice::<f32>(bs, bl, "layer norm / softmax")?,
        );
        let d = w.len();
        if d == 0 || x.len() % d != 0 || b.len() != d {
            candle_core::bail!("layer norm: last dimension differs from the weight's {d}")
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .for_each(|(yr, xr)| {
                let (mean, r) = row_stats(xr, self.eps);
                for i in 0..d {
                    yr[i] = (xr[i] - mean) * r * w[i] + b[i];
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
        bs: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda_rows::layer_norm(xs, xl, ws, wl, bs, bl, self.eps as f32)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !x.device().is_cpu() {
            return layer_norm_bwd_ops(x, w, grad, self.eps);
        }
        let grad = grad.contiguous()?;
        let guards = [x, w, &grad].map(|t| t.storage_and_layout());
        let host = |i: usize| -> Result<&[f32]> {
            match &*guards[i].0 {
                candle_core::Storage::Cpu(s) => slice(s, guards[i].1, "layer norm backward"),
                _ => candle_core::bail!("layer norm backward: CPU tensors only"),
            }
        };
        // Read in place: the inputs are contiguous (the forward made x so; w is a parameter).
        let (xv, wv, gv) = (host(0)?, host(1)?, host(2)?);
        let d = wv.len();
        let mut dx = vec![0f32; xv.len()];
        const ROWS: usize = 64;
        let (dw, db) = dx
            .par_chunks_mut(ROWS * d)
            .zip(xv.par_chunks(ROWS * d).zip(gv.par_chunks(ROWS * d)))
            .map(|(dxc, (xc, gc))| {
                let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
                let mut xhat = vec![0f32; d];
                for ((dxr, xr), gr) in dxc.chunks_mut(d).zip(xc.chunks(d)).zip(gc.chunks(d)) {
                    let (mean, r) = row_stats(xr, self.eps);
                    let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                    for i in 0..d {
                        xhat[i] = (xr[i] - mean) * r;
                        let gh = gr[i] * wv[i];
                        sum_g += gh;
                        sum_gx += gh * xhat[i];
                        dw[i] += gr[i] * xhat[i];
                        db[i] += gr[i];
                    }
                    let (mg, mgx) = (sum_g / d as f32, sum_gx / d as f32);
                    for i in 0..d {
                        dxr[i] = r * (gr[i] * wv[i] - mg - xhat[i] * mgx);
                    }
                }
                (dw, db)
            })
            .reduce(
                || (vec![0f32; d], vec![0f32; d]),
                |(mut a, mut b), (c, e)| {
                    for i in 0..d {
                        a[i] += c[i];
                        b[i] += e[i];
                    }
                    (a, b)
                },
            );
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, d, dev)?),
            Some(Tensor::from_vec(db, d, dev)?),
        ))
    }
}

/// The LayerNorm backward as tensor ops (devices other than the CPU): x̂ recomputed from x,
/// transient, so the forward keeps only x.
fn layer_norm_bwd_ops(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    eps: f64,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    // Detached, so the weight's gradient carries no graph node holding x and ∂y (Candle keeps
    // a parameter's gradient as computed: see `linear_cpu::backward`).
    let (x, w, grad) = (&x.detach(), &w.detach(), &grad.detach());
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let r = (centred.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    let xhat = centred.broadcast_mul(&r)?;
    let gh = grad.broadcast_mul(w)?;
    let mg = gh.mean_keepdim(D::Minus1)?;
    let mgx = (&gh * &xhat)?.mean_keepdim(D::Minus1)?;
    let dx = gh
        .broadcast_sub(&mg)?
        .sub(&xhat.broadcast_mul(&mgx)?)?
        .broadcast_mul(&r)?;
    let d = w.elem_count();
    let rows = |t: &Tensor| t.reshape(((), d));
    let dw = rows(&(grad * &xhat)?)?.sum(0)?;
    let db = rows(grad)?.sum(0)?;
    Ok((Some(dx), Some(dw), Some(db)))
}

/// Launches of candle-kernels' row kernels (`softmax_f32`, `layernorm_f32`: what candle-nn's
/// fused, backward-less `softmax_last_dim` and `layer_norm` run) inside our ops, which add the
/// backward passes.
#[cfg(feature = "cuda")]
mod cuda_rows {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{WrapErr, kernels};
    use candle_core::{CudaStorage, Layout, Result, Shape};

    fn view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
        match l.contiguous_offsets() {
            Some((a, b)) => Ok(s.as_cuda_slice::<f32>()?.slice(a..b)),
            None => candle_core::bail!("{what}: needs contiguous f32"),
        }
    }

    /// (rows, columns) of a row-major tensor over its last dimension.
    fn shape(l: &Layout) -> (usize, usize) {
        let cols = l.shape().dims().last().copied().unwrap_or(1).max(1);
        (l.shape().elem_count() / cols, cols)
    }

    pub fn softmax(s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let src = view(s, l, "softmax")?;
        let ((rows, cols), dev) = (shape(l), s.device());
        let func = dev.get_or_load_func("softmax_f32", &kernels::REDUCE)?;
        // SAFETY: every element is written by the kernel.
        let dst = unsafe { dev.alloc::<f32>(rows * cols)? };
        let mut b = func.builder();
        let n = cols as i32;
        b.arg(&src).arg(&dst).arg(&n);
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (1, 32, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernel's signature (src, dst, ncols) as candle-nn launches it.
        unsafe { b.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(dst, dev.clone()),
            l.shape().clone(),
        ))
    }

    pub fn layer_norm(
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        bs: &CudaStorage,
        bl: &Layout,
        eps: f32,
    ) -> Result<(CudaStorage, Shape)> {
        let (x, w, bias) = (
            view(xs, xl, "layer norm")?,
            view(ws, wl, "layer norm weight")?,
            view(bs, bl, "layer norm bias")?,
        );
        let ((rows, cols), dev) = (shape(xl), xs.device());
        if w.len() != cols || bias.len() != cols {
            candle_core::bail!("layer norm: last dimension {cols} differs from the weight's")
        }
        let block = if cols < 1024 { 32 } else { 1024 };
        let func = dev.get_or_load_func("layernorm_f32", &kernels::REDUCE)?;
        // SAFETY: every element is written by the kernel.
        let dst = unsafe { dev.alloc::<f32>(rows * cols)? };
        let (n, bsz) = (cols as i32, block as i32);
        let mut b = func.builder();
        b.arg(&x)
            .arg(&dst)
            .arg(&w)
            .arg(&bias)
            .arg(&n)
            .arg(&bsz)
            .arg(&eps);
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernel's signature (src, dst, alpha, beta, ncols, block_size, eps) as
        // candle-nn launches it.
        unsafe { b.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(dst, dev.clone()),
            xl.shape().clone(),
        ))
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact (erf) GELU: BERT's "gelu".
    Gelu,
    /// tanh-approximated GELU.
    GeluNew,
    /// x·σ(1.702x): CLIP's "quick_gelu".
    QuickGelu,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Gelu => crate::gelu::gelu_erf(x),
            Activation::GeluNew => x.gelu(),
            Activation::QuickGelu => crate::gelu::quick_gelu(x),
        }
    }
}

/// Multi-head self-attention with separate q/k/v projections and an output projection,
/// under the names the caller gives (BERT and CLIP name them differently).
pub struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl SelfAttention {
    /// `names`: the (q, k, v, out) projections' paths under `vb`.
    pub fn new(vb: &VarBuilder, dim: usize, heads: usize, names: [&str; 4]) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle_core::bail!("hidden size {dim} is not a multiple of {heads} heads")
        }
        let lin = |n: &str| linear(dim, dim, vb.pp(n));
        Ok(SelfAttention {
            q: lin(names[0])?,
            k: lin(names[1])?,
            v: lin(names[2])?,
            out: lin(names[3])?,
            heads,
        })
    }

    /// x [B, T, D]; `key_mask` [B, T]: 1 = token, 0 = padding. Attention itself is one op
    /// ([`crate::attention`]): on the CPU it keeps no score or probability tensor.
    pub fn forward(&self, x: &Tensor, key_mask: Option<&Tensor>) -> Result<Tensor> {
        let (q, k, v) = (self.q.forward(x)?, self.k.forward(x)?, self.v.forward(x)?);
        self.out.forward(&crate::attention::attention(
            &q, &k, &v, self.heads, key_mask,
        )?)
    }
}

/// Softmax over the last dimension, differentiable: a fused op with its backward
/// (∂x = y·(∂y − Σ ∂y·y)) for f32 on the CPU and CUDA, candle's composed ops elsewhere.
/// (candle-nn's own fused `softmax_last_dim` has no backward, like its LayerNorm.)
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused_here(x) {
        return x.contiguous()?.apply_op1(SoftmaxOp);
    }
    candle_nn::ops::softmax(x, D::Minus1)
}

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "gram-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s, l, "layer norm / softmax")?;
        let d = l.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .for_each(|(yr, xr)| {
                let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                for o in yr.iter_mut() {
                    *o *= inv;
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        cuda_rows::softmax(s, l)
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !res.device().is_cpu() {
            let (res, grad) = (&res.detach(), &grad.detach());
            let dot = (grad * res)?.sum_keepdim(D::Minus1)?;
            return Ok(Some((res * grad.broadcast_sub(&dot)?)?));
        }
        let host = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
        let (y, g) = (host(res)?, host(grad)?);
        let d = res.dims().last().copied().unwrap_or(1).max(1);
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(d)
            .zip(y.par_chunks(d).zip(g.par_chunks(d)))
            .for_each(|(o, (yr, gr))| {
                let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                for i in 0..d {
                    o[i] = yr[i] * (gr[i] - dot);
                }
            });
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
    }
}

// ---------------------------------------------------------------------------------------
// BERT (post-LayerNorm), Hugging Face names: embeddings.*, encoder.layer.N.*

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "bert_eps")]
    pub layer_norm_eps: f64,
}

fn gelu() -> String {
    "gelu".into()
}
fn two() -> usize {
    2
}
fn bert_eps() -> f64 {
    1e-12
}

fn activation(name: &str) -> Result<Activation> {
    Ok(match name {
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluNew,
        "quick_gelu" => Activation::QuickGelu,
        other => candle_core::bail!("unsupported activation '{other}'"),
    })
}

struct BertLayer {
    attn: SelfAttention,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
    act: Activation,
}

pub struct Bert {
    word: candle_nn::Embedding,
    position: candle_nn::Embedding,
    token_type: candle_nn::Embedding,
    emb_ln: LayerNorm,
    layers: Vec<BertLayer>,
    pub hidden: usize,
    pub max_positions: usize,
}

impl Bert {
    pub fn new(vb: VarBuilder, c: &BertConfig) -> Result<Bert> {
        let e = vb.pp("embeddings");
        let (h, eps) = (c.hidden_size, c.layer_norm_eps);
        let act = activation(&c.hidden_act)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                Ok(BertLayer {
                    attn: SelfAttention::new(
                        &l.pp("attention"),
                        h,
                        c.num_attention_heads,
                        ["self.query", "self.key", "self.value", "output.dense"],
                    )?,
                    attn_ln: LayerNorm::new(l.pp("attention.output.LayerNorm"), h, eps)?,
                    inter: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                    out: linear(c.intermediate_size, h, l.pp("output.dense"))?,
                    out_ln: LayerNorm::new(l.pp("output.LayerNorm"), h, eps)?,
                    act,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            word: candle_nn::embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                c.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            emb_ln: LayerNorm::new(e.pp("LayerNorm"), h, eps)?,
            layers,
            hidden: h,
            max_positions: c.max_position_embeddings,
        })
    }

    /// Token states [B, T, H] of ids [B, T] (u32) under mask [B, T] (1 = token).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        if t > self.max_positions {
            candle_core::bail!(
                "{t} tokens exceed the model's {} positions",
                self.max_positions
            )
        }
        let pos = Tensor::arange(0u32, t as u32, ids.device())?;
        let types = Tensor::zeros(t, candle_core::DType::U32, ids.device())?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&pos)?)?
            .broadcast_add(&self.token_type.forward(&types)?)?;
        let mut x = self.emb_ln.forward(&x)?;
        for l in &self.layers {
            x = l
                .attn_ln
                .forward(&(&x + l.attn.forward(&x, Some(mask))?)?)?;
            let y = l.out.forward(&l.act.apply(&l.inter.forward(&x)?)?)?;
            x = l.out_ln.forward(&(&x + y)?)?;
        }
        Ok(x)
    }
}

// ---------------------------------------------------------------------------------------
// ViT (pre-LayerNorm, CLIP's vision tower), Hugging Face CLIP names: embeddings.*,
// pre_layrnorm, encoder.layers.N.{layer_norm1, self_attn, layer_norm2, mlp}, post_layernorm.

/// A ViT's shape over a `grid_h × grid_w` grid of `patch`² patches of `channels` channels.
#[derive(Clone, Debug, PartialEq)]
pub struct VitShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub channels: usize,
    pub patch: usize,
    pub grid_h: usize,
    pub grid_w: usize,
    pub act: Activation,
    pub eps: f64,
}

struct VitLayer {
    ln1: LayerNorm,
    attn: SelfAttention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

pub struct Vit {
    patch: Tensor,
    class: Tensor,
    positions: Tensor,
    pre_ln: LayerNorm,
    layers: Vec<VitLayer>,
    post_ln: LayerNorm,
    s: VitShape,
}

impl Vit {
    pub fn new(vb: VarBuilder, s: &VitShape) -> Result<Vit> {
        let e = vb.pp("embeddings");
        let h = s.hidden;
        let normal = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let layers = (0..s.layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layers.{i}"));
                Ok(VitLayer {
                    ln1: LayerNorm::new(l.pp("layer_norm1"), h, s.eps)?,
                    attn: SelfAttention::new(
                        &l.pp("self_attn"),
                        h,
                        s.heads,
                        ["q_proj", "k_proj", "v_proj", "out_proj"],
                    )?,
                    ln2: LayerNorm::new(l.pp("layer_norm2"), h, s.eps)?,
                    fc1: linear(h, s.intermediate, l.pp("mlp.fc1"))?,
                    fc2: linear(s.intermediate, h, l.pp("mlp.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Vit {
            patch: e.get_with_hints(
                (h, s.channels, s.patch, s.patch),
                "patch_embedding.weight",
                normal,
            )?,
            class: e.get_with_hints(h, "class_embedding", normal)?,
            positions: e.get_with_hints(
                (s.grid_h * s.grid_w + 1, h),
                "position_embedding.weight",
                normal,
            )?,
            pre_ln: LayerNorm::new(vb.pp("pre_layrnorm"), h, s.eps)?,
            layers,
            post_ln: LayerNorm::new(vb.pp("post_layernorm"), h, s.eps)?,
            s: s.clone(),
        })
    }

    /// Pooled (post-LayerNorm [CLS]) states [B, hidden] of images [B, C, gh·p, gw·p].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = &self.s;
        let (b, p) = (x.dim(0)?, s.patch);
        // Non-overlapping patches as a matmul (the stride-p convolution, with the conv
        // weight's [D, C, p, p] layout kept for loading).
        let patches = x
            .reshape((b, s.channels, s.grid_h, p, s.grid_w, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, s.grid_h * s.grid_w, s.channels * p * p))?;
        let w = self.patch.reshape((s.hidden, s.channels * p * p))?;
        let tokens = matmul(&patches, &w.t()?)?;
        let cls = self.class.reshape((1, 1, s.hidden))?.repeat((b, 1, 1))?;
        let mut h = Tensor::cat(&[cls, tokens], 1)?.broadcast_add(&self.positions)?;
        h = self.pre_ln.forward(&h)?;
        for l in &self.layers {
            h = (&h + l.attn.forward(&l.ln1.forward(&h)?, None)?)?;
            let y = l
                .fc2
                .forward(&s.act.apply(&l.fc1.forward(&l.ln2.forward(&h)?)?)?)?;
            h = (h + y)?;
        }
        self.post_ln.forward(&h.narrow(1, 0, 1)?.squeeze(1)?)
    }
}

/// Activation from a config's `hidden_act` (CLIP's default: quick_gelu).
pub fn activation_named(name: Option<&str>) -> Result<Activation> {
    activation(name.unwrap_or("quick_gelu"))
}
