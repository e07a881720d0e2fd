//! Data parallelism with one code path for any world size.
//!
//! Each rank embeds its local slice of the global batch; the embeddings are all-gathered, so
//! every rank scores its anchors against the global batch (and the global anchors against its
//! candidates) — open_clip's `local_loss` with `gather_with_grad`. The gradient of the other
//! ranks' losses with respect to this rank's embeddings is recovered without a custom autograd
//! op: the loss is differentiated with respect to the gathered embeddings (a leaf), those
//! gradients are all-reduced, and this rank's slice is pushed through its encoders by a second
//! backward of Σ e·g. Parameter gradients are then all-reduced and divided by the world size,
//! which gives exactly the gradient of the single-process loss on the concatenated batch
//! (`tests/distributed.rs` checks this with several simulated ranks in one process).
//!
//! [`SingleProcess`] is the world of size 1 (the gathers are identities). [`ThreadWorld`]
//! runs ranks as threads of one process. With the `nccl` feature, `crate::train::nccl` connects
//! one process per GPU through NCCL.

use crate::config::{LossKind, TrainConfig};
use crate::model::gram::{DamHead, GramModel};
use crate::model::losses::{bce_with_logits, sample_hard_negatives, smoothed_ce_offset};
use crate::model::missing::complete;
use crate::model::volume::volume_matrix;
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Barrier, Mutex};

/// The two collectives data-parallel training needs. Every rank calls them in the same order
/// with tensors of the same shape.
pub trait Collective {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// Every rank's `local`, concatenated along dimension 0 in rank order.
    fn all_gather(&self, local: &Tensor) -> Result<Tensor>;
    /// Element-wise sum over ranks.
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
}

/// World size 1.
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn all_gather(&self, local: &Tensor) -> Result<Tensor> {
        Ok(local.clone())
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
}

struct Shared {
    slots: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

/// Ranks as threads of one process, exchanging through shared memory.
pub struct ThreadWorld {
    rank: usize,
    world: usize,
    shared: Arc<Shared>,
}

impl ThreadWorld {
    /// One handle per rank; move each into its own thread.
    pub fn new(world: usize) -> Vec<ThreadWorld> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(vec![Vec::new(); world]),
            barrier: Barrier::new(world),
        });
        (0..world)
            .map(|rank| ThreadWorld {
                rank,
                world,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Publish `data`, wait for everyone, read all slots, wait again (so no slot is
    /// overwritten by a later call before every rank has read it).
    fn exchange(&self, data: Vec<f32>) -> Vec<Vec<f32>> {
        self.shared.slots.lock().expect("slots")[self.rank] = data;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().expect("slots").clone();
        self.shared.barrier.wait();
        all
    }
}

impl Collective for ThreadWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.world
    }
    fn all_gather(&self, local: &Tensor) -> Result<Tensor> {
        let mut dims = local.dims().to_vec();
        let host = local
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let all: Vec<f32> = self.exchange(host).concat();
        dims[0] *= self.world;
        Tensor::from_vec(all, dims, local.device())?.to_dtype(local.dtype())
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        let host = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut sum = vec![0f32; host.len()];
        for part in self.exchange(host) {
            for (s, x) in sum.iter_mut().zip(part) {
                *s += x;
            }
        }
        Tensor::from_vec(sum, t.dims(), t.device())?.to_dtype(t.dtype())
    }
}

/// This rank's loss: its `b` anchors (rows rank·b..) against the global candidates, and the
/// global anchors against its `b` candidates, from gathered embeddings `emb` [W·b, D] per
/// modality, whose missing rows (`missing`: gathered 0/1 masks, `None` where none is missing)
/// are first replaced by the run's rule ([`crate::model::missing`]). The mean over ranks
/// equals the single-process loss on the whole batch.
pub fn local_loss(
    model: &GramModel,
    cfg: &TrainConfig,
    emb: &[Tensor],
    missing: &[Option<Tensor>],
    rank: usize,
    b: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    let a = model.anchor_index();
    let emb = &complete(emb, missing, cfg.missing, &model.placeholders, a)?;
    let others: Vec<Tensor> = (0..emb.len())
        .filter(|&t| t != a)
        .map(|t| emb[t].clone())
        .collect();
    let (off, anchor) = (rank * b, &emb[a]);
    let others_local = others
        .iter()
        .map(|t| t.narrow(0, off, b))
        .collect::<Result<Vec<_>>>()?;
    let l = Local {
        anchor,
        others: &others,
        others_local: &others_local,
        inv_tau: model.inv_tau()?,
        ls: cfg.label_smoothing,
        d: model.config.embed_dim,
        off,
        b,
        n: anchor.dim(0)?,
    };
    match cfg.loss {
        LossKind::Pairwise => l.pairwise(),
        LossKind::Symile => l.symile(),
        LossKind::Gram => {
            let rows = volume_matrix(&l.local(anchor)?, &others)?;
            let cols = if l.n == b {
                rows.clone()
            } else {
                volume_matrix(anchor, &others_local)?
            };
            let loss = l.both(rows.neg()?, cols.neg()?)?;
            match &model.dam {
                Some(dam) => loss + (l.dam(dam, &rows, rng)? * cfg.dam_weight)?,
                None => Ok(loss),
            }
        }
    }
}

/// This rank's view of a gathered batch of `n` samples: its `b` local rows start at `off`.
struct Local<'a> {
    anchor: &'a Tensor,
    others: &'a [Tensor],
    others_local: &'a [Tensor],
    inv_tau: Tensor,
    ls: f64,
    /// The embedding size (`present` embeddings carry k more coordinates: [`crate::config::MissingRule`]).
    d: usize,
    off: usize,
    b: usize,
    n: usize,
}

impl Local<'_> {
    fn local(&self, t: &Tensor) -> Result<Tensor> {
        t.narrow(0, self.off, self.b)
    }

    /// Both directions' cross-entropy: rows [b, n] of local anchors, columns [n, b] of local
    /// candidates.
    fn both(&self, rows: Tensor, cols: Tensor) -> Result<Tensor> {
        let (off, ls) = (self.off, self.ls);
        let a2d = smoothed_ce_offset(&rows.broadcast_mul(&self.inv_tau)?, off, ls)?;
        let d2a = smoothed_ce_offset(&cols.t()?.broadcast_mul(&self.inv_tau)?, off, ls)?;
        (a2d + d2a)? * 0.5
    }

    /// Pairwise InfoNCE: the anchor against each other modality, summed.
    fn pairwise(&self) -> Result<Tensor> {
        let anchor = self.anchor;
        let mut total = Tensor::zeros((), anchor.dtype(), anchor.device())?;
        for (m, m_local) in self.others.iter().zip(self.others_local) {
            let rows = self.local(anchor)?.matmul(&m.t()?)?;
            // One rank: the column block is the whole matrix again.
            let cols = if self.n == self.b {
                rows.clone()
            } else {
                anchor.matmul(&m_local.t()?)?
            };
            total = (total + self.both(rows, cols)?)?;
        }
        Ok(total)
    }

    /// Symile: each modality against the elementwise product of the others, averaged.
    fn symile(&self) -> Result<Tensor> {
        let anchor = self.anchor;
        let all: Vec<&Tensor> = std::iter::once(anchor).chain(self.others).collect();
        let scale = (self.d as f64).powf(all.len() as f64 / 2.0 - 1.0);
        let mut total = Tensor::zeros((), anchor.dtype(), anchor.device())?;
        for t in 0..all.len() {
            let mut prod: Option<Tensor> = None;
            for (s, x) in all.iter().enumerate() {
                if s != t {
                    let x = self.local(x)?;
                    prod = Some(match prod {
                        None => x,
                        Some(p) => p.mul(&x)?,
                    });
                }
            }
            let logits = (prod.expect("k ≥ 2").matmul(&all[t].t()?)? * scale)?
                .broadcast_mul(&self.inv_tau)?;
            total = (total + smoothed_ce_offset(&logits, self.off, self.ls)?)?;
        }
        total / all.len() as f64
    }

    /// DAM on the local b×b block of the volume rows [b, n]: its hard negatives come from the
    /// local batch, drawn by the GRAM logits, which are also one of its inputs (detached).
    fn dam(&self, dam: &DamHead, rows: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let (off, b, anchor) = (self.off, self.b, self.anchor);
        let block = rows
            .narrow(1, off, b)?
            .detach()
            .neg()?
            .broadcast_mul(&self.inv_tau.detach())?;
        let mut pairs: Vec<(usize, usize)> = (0..b).map(|i| (i, i)).collect();
        pairs.extend(sample_hard_negatives(&block, rng)?);
        let dev = anchor.device();
        let u32s = |f: &dyn Fn(&(usize, usize)) -> usize| {
            let v: Vec<u32> = pairs.iter().map(|p| f(p) as u32).collect();
            Tensor::from_vec(v, pairs.len(), dev)
        };
        let (ai, dj) = (u32s(&|p| p.0 + off)?, u32s(&|p| p.1 + off)?);
        let gram_logit = block
            .flatten_all()?
            .index_select(&u32s(&|p| p.0 * b + p.1)?, 0)?;
        let rows = self
            .others
            .iter()
            .map(|o| o.index_select(&dj, 0))
            .collect::<Result<Vec<_>>>()?;
        // The DAM head reads D-dimensional embeddings: a `present` missing vector is 0 there.
        let first_d = |t: &Tensor| t.narrow(1, 0, self.d);
        let rows = rows.iter().map(first_d).collect::<Result<Vec<_>>>()?;
        let logits = dam.score(&first_d(&anchor.index_select(&ai, 0)?)?, &rows, &gram_logit)?;
        let targets: Vec<f32> = pairs.iter().map(|p| (p.0 == p.1) as u8 as f32).collect();
        bce_with_logits(&logits, &Tensor::from_vec(targets, pairs.len(), dev)?)
    }
}

/// Every rank's missing-row masks per modality, gathered like the embeddings: a 0/1 f32 mask
/// [W·b], or `None` when no rank misses the modality in this batch (every rank decides alike).
/// A world of one gathers nothing.
fn gather_masks(
    local: &[Vec<bool>],
    b: usize,
    coll: &dyn Collective,
    dev: &candle_core::Device,
) -> Result<Vec<Option<Tensor>>> {
    local
        .iter()
        .map(|m| {
            if coll.world() == 1 && !m.contains(&true) {
                return Ok(None);
            }
            let host: Vec<f32> = (0..b)
                .map(|i| f32::from(u8::from(m.get(i) == Some(&true))))
                .collect();
            let all = coll.all_gather(&Tensor::from_vec(host, b, dev)?)?;
            let any = all.sum_all()?.to_scalar::<f32>()? > 0.0;
            Ok(any.then_some(all))
        })
        .collect()
}

/// One step's gradients on this rank: embed the local batch, gather, differentiate the local
/// loss, route the embedding gradients back to their ranks, backprop through the encoders, and
/// average the parameter gradients over ranks. Returns the global loss (mean over ranks) and
/// gradients for every variable in `params`.
pub fn step_gradients(
    model: &GramModel,
    cfg: &TrainConfig,
    local_emb: &[Tensor],
    local_missing: &[Vec<bool>],
    params: &[Var],
    coll: &dyn Collective,
    rng: &mut ChaCha8Rng,
) -> Result<(f64, GradStore)> {
    let (rank, world) = (coll.rank(), coll.world());
    let b = local_emb[0].dim(0)?;
    let missing = gather_masks(local_missing, b, coll, local_emb[0].device())?;
    let gathered = local_emb
        .iter()
        .map(|e| Var::from_tensor(&coll.all_gather(&e.detach())?))
        .collect::<Result<Vec<_>>>()?;
    let leaves: Vec<Tensor> = gathered.iter().map(|v| v.as_tensor().clone()).collect();
    let loss = local_loss(model, cfg, &leaves, &missing, rank, b, rng)?;
    let mut loss_grads = loss.backward()?;
    let mut surrogate: Option<Tensor> = None;
    for (e, leaf) in local_emb.iter().zip(&leaves) {
        let Some(g) = loss_grads.remove(leaf) else {
            continue;
        };
        // A constant in the surrogate: a leaf's gradient can still carry graph nodes (the
        // backward of a·mᵀ is G·m, with m tracked — a learned placeholder among its rows), and
        // differentiating them again would add a second, spurious term to those parameters.
        let mine = coll.all_reduce_sum(&g)?.narrow(0, rank * b, b)?.detach();
        let term = e.mul(&mine)?.sum_all()?;
        surrogate = Some(match surrogate {
            None => term,
            Some(s) => (s + term)?,
        });
    }
    // Every embedding feeds the loss, so the surrogate exists; its store then collects all.
    let mut grads = match surrogate {
        Some(s) => s.backward()?,
        None => candle_core::bail!("no embedding gradient: the loss does not use the batch"),
    };
    // Each parameter's gradient: through the embeddings plus directly from the loss (the
    // temperature and the DAM head).
    let mut present = Vec::with_capacity(params.len());
    for p in params {
        let t = p.as_tensor();
        let g = match (grads.remove(t), loss_grads.remove(t)) {
            (Some(a), Some(b)) => (a + b)?,
            (Some(g), None) | (None, Some(g)) => g,
            (None, None) => continue,
        };
        present.push((t.clone(), g));
    }
    if world > 1 && !present.is_empty() {
        // One all-reduce for the whole model (a flat bucket), then the mean over ranks.
        let flat = Tensor::cat(
            &present
                .iter()
                .map(|(_, g)| g.flatten_all())
                .collect::<Result<Vec<_>>>()?,
            0,
        )?;
        let mean = (coll.all_reduce_sum(&flat)? / world as f64)?;
        let mut offset = 0;
        for (_, g) in present.iter_mut() {
            let n = g.elem_count();
            *g = mean.narrow(0, offset, n)?.reshape(g.shape())?;
            offset += n;
        }
    }
    for (t, g) in present {
        grads.insert(&t, g);
    }
    // Every gradient returned detached (the parameters' and any other tensor's left in the
    // store, such as a frozen encoder's weights): Candle keeps a leaf's gradient as computed,
    // and one still carrying graph nodes would hold the forward's activations alive through
    // the optimizer step.
    let ids: Vec<_> = grads.get_ids().copied().collect();
    for id in ids {
        if let Some(g) = grads.get_id(id).map(Tensor::detach) {
            grads.insert_id(id, g);
        }
    }
    let value = loss.detach().to_dtype(DType::F64)?;
    let global = (coll.all_reduce_sum(&value)? / world as f64)?.to_scalar::<f64>()?;
    Ok((global, grads))
}
