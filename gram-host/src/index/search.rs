//! `gram search --index`: the top-k of every query over every shard, merged.

use super::open::Index;
use crate::commands::Backend;
use crate::cpu::{CpuStats, Scorer, topk};
use crate::error::{Arg, Error};
use crate::input::View;
use std::time::{Duration, Instant};

/// What a search did.
#[derive(Default)]
pub struct SearchReport {
    pub stats: CpuStats,
    pub compute: Duration,
}

/// For every row of `anchor`, the `k` candidates of smallest volume over all shards of
/// `index`, as [`topk::key`]s with global row ids, ascending (ties by the smaller id) — the
/// same hits as a search over the source files. Each shard is searched with all threads and
/// merged into the running lists, so memory is the mapped index plus O(N1·k).
pub fn search_keys(
    index: &Index,
    anchor: View,
    k: usize,
    backend: Backend,
) -> Result<(Vec<Vec<u64>>, SearchReport), Error> {
    check_query(index, anchor, k)?;
    let t = Instant::now();
    // One device for every shard (opening one takes longer than scoring a small shard).
    #[cfg(feature = "gpu")]
    let ctx = match backend {
        Backend::Gpu => {
            Some(gram_gpu::GpuContext::new().map_err(|e| Error::Gpu(format!("{e}").to_string()))?)
        }
        Backend::Cpu => None,
    };
    let mut report = SearchReport::default();
    let mut hits: Vec<Vec<u64>> = vec![Vec::new(); anchor.rows];
    for shard in &index.shards {
        let factors = shard.factors(index.dim)?;
        let modalities = shard.modalities();
        // The query was checked finite when it was read: a NaN or an infinity met while scoring
        // lies in the shard's vectors (one planted after the build, checksum updated); other
        // refusals concern the query.
        let fail = |e: gram_nostd::GramError| match e {
            gram_nostd::GramError::NonFinite => Error::data(shard.path.display(), e.to_string()),
            _ => Error::data(anchor.name, e.to_string()),
        };
        let shard_fail =
            |e: gram_nostd::GramError| Error::data(shard.path.display(), e.to_string());
        let keys = match backend {
            Backend::Cpu => {
                let scorer = Scorer::with_factors(&modalities, factors).map_err(shard_fail)?;
                let (keys, stats) = scorer
                    .top_k_keys(anchor.data, k, shard.first_row)
                    .map_err(fail)?;
                report.stats = report.stats + stats;
                keys
            }
            #[cfg(feature = "gpu")]
            Backend::Gpu => gpu_top_k(
                ctx.as_ref().expect("opened for gpu"),
                &modalities,
                &factors,
                shard,
                anchor,
                k,
            )?,
            #[cfg(not(feature = "gpu"))]
            Backend::Gpu => return crate::commands::no_gpu(),
        };
        for (row, new) in hits.iter_mut().zip(keys) {
            *row = topk::merge([std::mem::take(row), new], k);
        }
    }
    report.compute = t.elapsed();
    Ok((hits, report))
}

/// Queries of the index's dimension, and 1 ≤ k ≤ the candidates.
pub(crate) fn check_query(index: &Index, anchor: View, k: usize) -> Result<(), Error> {
    if anchor.cols != index.dim {
        return Err(Error::data(
            anchor.name,
            format!(
                "dimension {} does not match the index's dimension {}",
                anchor.cols, index.dim
            ),
        ));
    }
    let total = index.rows();
    if k == 0 || k > total {
        return Err(Error::argument(
            Arg::TopK,
            k,
            format!("must be between 1 and the number of candidates ({total})"),
        ));
    }
    Ok(())
}

/// One shard on gram-gpu, its bases formed from the stored factors (no refactoring).
#[cfg(feature = "gpu")]
fn gpu_top_k(
    ctx: &gram_gpu::GpuContext,
    modalities: &[&[f32]],
    factors: &crate::cpu::Factors,
    shard: &super::Shard,
    anchor: View,
    k: usize,
) -> Result<Vec<Vec<u64>>, Error> {
    let fail = |e: gram_gpu::GpuError| match e {
        gram_gpu::GpuError::Input(e) => Error::data(anchor.name, format!("{e}")),
        other => Error::Gpu(other.to_string()),
    };
    let k = k.min(shard.rows);
    if k > gram_gpu::MAX_TOP_K {
        return Err(Error::argument(
            Arg::TopK,
            k,
            format!("the GPU backend supports at most {}", gram_gpu::MAX_TOP_K),
        ));
    }
    let scorer =
        gram_gpu::GpuScorer::from_candidates(ctx, modalities, shard.rows, factors.dim(), |j| {
            factors.candidate(j)
        })
        .map_err(fail)?;
    let rows = scorer.top_k(anchor.data, k).map_err(fail)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|(j, v)| topk::key(shard.first_row + j, v))
                .collect()
        })
        .collect())
}
