//! Where batches come from: a feature split (`.npy` rows) or a raw split (JSONL manifest,
//! decoded by encoders' preprocessing), behind one trait, plus a background prefetcher.

use crate::data::Split;
use crate::encoders::HostInput;
use crate::raw::RawSplit;
use std::sync::mpsc;

/// Batches by sample index. `batch` returns the inputs per modality and the indices actually
/// used (bad raw samples may be skipped).
pub trait Source: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn batch(&self, idx: &[usize]) -> Result<(Vec<HostInput>, Vec<usize>), String>;
    /// Distinct samples skipped as bad so far.
    fn skipped(&self) -> usize {
        0
    }
}

impl Source for Split {
    fn len(&self) -> usize {
        Split::len(self)
    }
    fn batch(&self, idx: &[usize]) -> Result<(Vec<HostInput>, Vec<usize>), String> {
        let inputs = (0..self.features.len())
            .map(|t| HostInput::Features {
                data: self.gather(t, idx),
                dim: self.features[t].cols,
            })
            .collect();
        Ok((inputs, idx.to_vec()))
    }
}

impl Source for RawSplit {
    fn len(&self) -> usize {
        RawSplit::len(self)
    }
    fn batch(&self, idx: &[usize]) -> Result<(Vec<HostInput>, Vec<usize>), String> {
        RawSplit::batch(self, idx)
    }
    fn skipped(&self) -> usize {
        RawSplit::skipped(self)
    }
}

pub type Batch = Result<(Vec<HostInput>, Vec<usize>), String>;

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
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Batch>(depth);
        s.spawn(move || {
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
