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

use crate::ops::layer_norm::LayerNorm;
use crate::ops::precision::{Linear, linear, matmul};
use candle_core::{Module, Result, Tensor};
use candle_nn::{VarBuilder, init::Init};
use serde::{Deserialize, Serialize};

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
            Activation::Gelu => crate::ops::gelu::gelu_erf(x),
            Activation::GeluNew => x.gelu(),
            Activation::QuickGelu => crate::ops::gelu::quick_gelu(x),
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
    /// ([`crate::ops::attention`]): on the CPU it keeps no score or probability tensor.
    pub fn forward(&self, x: &Tensor, key_mask: Option<&Tensor>) -> Result<Tensor> {
        let (q, k, v) = (self.q.forward(x)?, self.k.forward(x)?, self.v.forward(x)?);
        self.out.forward(&crate::ops::attention::attention(
            &q, &k, &v, self.heads, key_mask,
        )?)
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

/// The activation a config's `hidden_act` names.
pub fn activation(name: &str) -> Result<Activation> {
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
// ViT (pre-LayerNorm), Hugging Face CLIP / SigLIP vision names: embeddings.*, [pre_layrnorm],
// encoder.layers.N.{layer_norm1, self_attn, layer_norm2, mlp}, post_layernorm, [head.*].

/// The two layouts of the same pre-LayerNorm ViT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VitFamily {
    /// \[CLS\] token, patch projection without bias, `pre_layrnorm`; pooled = LayerNorm'd
    /// \[CLS\].
    Clip,
    /// No \[CLS\], patch projection with bias, no pre-LayerNorm; every token LayerNorm'd,
    /// pooled by [`AttentionPool`].
    Siglip,
}

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
    pub family: VitFamily,
}

/// SigLIP's `SiglipMultiheadAttentionPoolingHead`: a learned probe attends over the tokens
/// (PyTorch's `nn.MultiheadAttention`, its q/k/v projections packed in `in_proj_*`), then a
/// residual LayerNorm + MLP; pooled = the probe's output.
pub struct AttentionPool {
    probe: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    act: Activation,
}

impl AttentionPool {
    pub fn new(vb: VarBuilder, s: &VitShape) -> Result<AttentionPool> {
        let h = s.hidden;
        let normal = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let a = vb.pp("attention");
        let w = a.get_with_hints((3 * h, h), "in_proj_weight", normal)?;
        let b = a.get_with_hints(3 * h, "in_proj_bias", Init::Const(0.0))?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear::new(
                w.narrow(0, i * h, h)?,
                Some(b.narrow(0, i * h, h)?),
            ))
        };
        Ok(AttentionPool {
            probe: vb.get_with_hints((1, 1, h), "probe", normal)?,
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out: linear(h, h, a.pp("out_proj"))?,
            ln: LayerNorm::new(vb.pp("layernorm"), h, s.eps)?,
            fc1: linear(h, s.intermediate, vb.pp("mlp.fc1"))?,
            fc2: linear(s.intermediate, h, vb.pp("mlp.fc2"))?,
            heads: s.heads,
            act: s.act,
        })
    }

    /// Pooled [B, hidden] of tokens [B, T, hidden].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let probe = self.probe.repeat((b, 1, 1))?;
        let q = self.q.forward(&probe)?;
        let (k, v) = (self.k.forward(x)?, self.v.forward(x)?);
        // One query row: the tensor-op form (the fused op is for square self-attention).
        let y = self.out.forward(&crate::ops::attention::attention_ops(
            &q, &k, &v, self.heads, None,
        )?)?;
        let z = self
            .fc2
            .forward(&self.act.apply(&self.fc1.forward(&self.ln.forward(&y)?)?)?)?;
        (y + z)?.squeeze(1)
    }
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
    /// SigLIP's patch bias.
    patch_bias: Option<Tensor>,
    /// CLIP's \[CLS\] embedding and pre-LayerNorm.
    class: Option<(Tensor, LayerNorm)>,
    positions: Tensor,
    layers: Vec<VitLayer>,
    post_ln: LayerNorm,
    /// SigLIP's pooling head.
    head: Option<AttentionPool>,
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
        let clip = s.family == VitFamily::Clip;
        let class = if clip {
            Some((
                e.get_with_hints(h, "class_embedding", normal)?,
                LayerNorm::new(vb.pp("pre_layrnorm"), h, s.eps)?,
            ))
        } else {
            None
        };
        Ok(Vit {
            patch: e.get_with_hints(
                (h, s.channels, s.patch, s.patch),
                "patch_embedding.weight",
                normal,
            )?,
            patch_bias: if clip {
                None
            } else {
                Some(e.get_with_hints(h, "patch_embedding.bias", Init::Const(0.0))?)
            },
            class,
            positions: e.get_with_hints(
                (s.grid_h * s.grid_w + usize::from(clip), h),
                "position_embedding.weight",
                normal,
            )?,
            layers,
            post_ln: LayerNorm::new(vb.pp("post_layernorm"), h, s.eps)?,
            head: if clip {
                None
            } else {
                Some(AttentionPool::new(vb.pp("head"), s)?)
            },
            s: s.clone(),
        })
    }

    /// Pooled states [B, hidden] of images [B, C, gh·p, gw·p] (CLIP: the LayerNorm'd
    /// \[CLS\]; SigLIP: the attention pool of the LayerNorm'd tokens).
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
        let mut tokens = matmul(&patches, &w.t()?)?;
        if let Some(bias) = &self.patch_bias {
            tokens = tokens.broadcast_add(bias)?;
        }
        let mut h = match &self.class {
            Some((class, pre_ln)) => {
                let cls = class.reshape((1, 1, s.hidden))?.repeat((b, 1, 1))?;
                let h = Tensor::cat(&[cls, tokens], 1)?.broadcast_add(&self.positions)?;
                pre_ln.forward(&h)?
            }
            None => tokens.broadcast_add(&self.positions)?,
        };
        for l in &self.layers {
            h = (&h + l.attn.forward(&l.ln1.forward(&h)?, None)?)?;
            let y = l
                .fc2
                .forward(&s.act.apply(&l.fc1.forward(&l.ln2.forward(&h)?)?)?)?;
            h = (h + y)?;
        }
        match &self.head {
            Some(head) => head.forward(&self.post_ln.forward(&h)?),
            None => self.post_ln.forward(&h.narrow(1, 0, 1)?.squeeze(1)?),
        }
    }
}
