//! Where batches come from: a feature split (`.npy` rows) or a raw split (JSONL manifest,
//! decoded by encoders' preprocessing), behind one trait, plus a background prefetcher.

pub use crate::data::batch::HostBatch;
use crate::data::features::Split;
use crate::data::features::load_split;
use crate::data::raw::{self, Prep, RawSplit};
use crate::error::Error;
use crate::model::encoders::HostInput;
use crate::model::gram::ModelConfig;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::mpsc;
use tokenizers::Tokenizer;

/// Batches by sample index.
pub trait Source: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn batch(&self, idx: &[usize]) -> Result<HostBatch, Error>;
    /// Distinct samples skipped as bad so far.
    fn skipped(&self) -> usize {
        0
    }
    /// Whether sample `i` lacks a modality.
    fn incomplete(&self, i: usize) -> bool;
}

/// The complete samples of a source, renumbered 0.. (training with `missing = "drop"`).
pub struct Complete {
    inner: Box<dyn Source>,
    /// The inner indices of the complete samples, ascending.
    rows: Vec<usize>,
}

impl Complete {
    pub fn of(inner: Box<dyn Source>) -> Complete {
        let rows = (0..inner.len()).filter(|&i| !inner.incomplete(i)).collect();
        Complete { inner, rows }
    }
}

impl Source for Complete {
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn batch(&self, idx: &[usize]) -> Result<HostBatch, Error> {
        let inner: Vec<usize> = idx.iter().map(|&i| self.rows[i]).collect();
        let mut b = self.inner.batch(&inner)?;
        for k in b.kept.iter_mut() {
            *k = self
                .rows
                .binary_search(k)
                .expect("a kept sample is one asked for");
        }
        Ok(b)
    }
    fn skipped(&self) -> usize {
        self.inner.skipped()
    }
    fn incomplete(&self, _: usize) -> bool {
        false
    }
}

impl Source for Split {
    fn len(&self) -> usize {
        Split::len(self)
    }
    fn batch(&self, idx: &[usize]) -> Result<HostBatch, Error> {
        let inputs = (0..self.features.len())
            .map(|t| HostInput::Features {
                data: self.gather(t, idx),
                dim: self.features[t].cols,
            })
            .collect();
        let missing = self
            .missing
            .iter()
            .map(|m| idx.iter().map(|&i| m[i]).collect())
            .collect();
        Ok(HostBatch {
            inputs,
            kept: idx.to_vec(),
            missing,
        })
    }
    fn incomplete(&self, i: usize) -> bool {
        self.missing.iter().any(|m| m[i])
    }
}

impl Source for RawSplit {
    fn len(&self) -> usize {
        RawSplit::len(self)
    }
    fn batch(&self, idx: &[usize]) -> Result<HostBatch, Error> {
        RawSplit::batch(self, idx)
    }
    fn skipped(&self) -> usize {
        RawSplit::skipped(self)
    }
    fn incomplete(&self, i: usize) -> bool {
        RawSplit::incomplete(self, i)
    }
}

pub type Batch = Result<HostBatch, Error>;

/// Run `consume` over the batches of `plans` (index lists, in order) while a background thread
/// prepares up to `depth` batches ahead (`depth` = 0: prepare in line). Stops at the first
/// error of `consume`; the producer notices the closed channel and ends.
pub fn prefetched<R>(
    source: &dyn Source,
    plans: impl Iterator<Item = Vec<usize>> + Send,
    depth: usize,
    mut consume: impl FnMut(Batch) -> Result<(), R>,
) -> Result<(), R> {
    if depth == 0 {
        for p in plans {
            consume(source.batch(&p))?;
        }
        return Ok(());
    }
    // The loader computes (decoding, resampling, log-mels) in the caller's floating-point mode.
    let mode = crate::fp_mode::current();
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Batch>(depth);
        s.spawn(move || {
            crate::fp_mode::set(mode);
            for p in plans {
                if tx.send(source.batch(&p)).is_err() {
                    break;
                }
            }
        });
        for b in rx.iter() {
            consume(b)?;
        }
        Ok(())
    })
}

/// The batches of split `split` of `data` as `config` consumes them.
pub fn open_source(
    data: &Path,
    split: &str,
    config: &ModelConfig,
    tokenizers: &[Option<Tokenizer>],
    skip_bad: bool,
) -> Result<Box<dyn Source>, Error> {
    if raw::is_raw(data) {
        let preps = (0..config.modalities.len())
            .map(|t| Prep::for_spec(&config.encoder(t), tokenizers[t].as_ref()))
            .collect::<Result<Vec<_>, Error>>()?;
        let info = crate::data::features::read_info(data)?;
        let may_miss = config.modalities.iter().map(|m| info.may_miss(m)).collect();
        Ok(Box::new(RawSplit::open(
            data,
            split,
            &config.modalities,
            preps,
            may_miss,
            skip_bad,
        )?))
    } else {
        let s = load_split(data, split)?;
        if s.info.modalities != config.modalities || s.dims() != config.input_dims {
            return Err(Error::data(
                data,
                "modalities or feature sizes differ from the model's",
            ));
        }
        Ok(Box::new(s))
    }
}

/// Batch indices of `step`: epochs are seeded permutations, so any step's batch can be
/// recomputed from (seed, step) alone — which is what makes `--resume` exact.
pub fn batch_indices(seed: u64, step: u64, batch: usize, n: usize) -> Vec<usize> {
    let per_epoch = (n / batch).max(1) as u64;
    let (epoch, pos) = (step / per_epoch, (step % per_epoch) as usize);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut ChaCha8Rng::seed_from_u64(
        seed ^ 0x5eed_0000_0000_0000 ^ epoch,
    ));
    perm.into_iter()
        .cycle()
        .skip(pos * batch)
        .take(batch)
        .collect()
}
