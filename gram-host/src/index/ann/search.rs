//! `gram search --index … --approx`: candidates from the probed cells and the low-w list,
//! estimated from their codes, the best re-scored exactly, the rest bounded from below.

use super::build::slack;
use super::{AnnFile, AnnView};
use crate::cpu::{Factors, Scorer, topk};
use crate::error::{Arg, Error};
use crate::index::{Index, Shard};
use crate::input::View;
use crate::simd::{self, Level};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// The knobs that trade recall for speed, per shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApproxOptions {
    /// Cells probed (of ~n·(k−1)/[`super::LIST_TARGET`]).
    pub probe: usize,
    /// Smallest-w candidates always estimated.
    pub low_w: usize,
    /// Best estimates re-scored exactly (at least the top-k's k).
    pub rerank: usize,
}

impl Default for ApproxOptions {
    fn default() -> ApproxOptions {
        ApproxOptions {
            probe: 16,
            low_w: 256,
            rerank: 64,
        }
    }
}

/// What an approximate search found: per query, the top-k as [`topk::key`]s and a lower bound
/// on vol² of every candidate it did not score exactly.
pub struct ApproxHits {
    pub keys: Vec<Vec<u64>>,
    pub bound_sq: Vec<f64>,
}

/// What an approximate search did.
#[derive(Default)]
pub struct ApproxReport {
    /// Per query, the time its search took on one thread.
    pub latencies: Vec<Duration>,
    /// Candidates estimated and re-scored exactly, summed over queries and shards.
    pub estimated: u64,
    pub rescored: u64,
    pub compute: Duration,
}

/// Every shard's approximate-search file, mapped and checked (refused if a shard has none).
pub fn open(index: &Index) -> Result<Vec<AnnFile>, Error> {
    index
        .shards
        .par_iter()
        .map(|s| {
            let entry = s.ann.as_ref().ok_or_else(|| {
                Error::data(
                    s.path.display(),
                    "this index was built without --ann: rebuild it with `gram index build --ann` for --approx",
                )
            })?;
            let dir = s.path.parent().unwrap_or(std::path::Path::new("."));
            AnnFile::open(dir, entry, s.rows, index.k - 1, index.dim)
        })
        .collect()
}

/// For every row of `anchor`: the `k` best candidates found (as [`topk::key`]s, volumes
/// exactly as the exact search computes them, ascending, ties by the smaller row) and a lower
/// bound on vol² of every candidate not scored exactly ([`super::certified`] says whether the
/// top-k is thereby exact). Queries run in parallel, each over every shard in turn.
pub fn search(
    index: &Index,
    anns: &[AnnFile],
    anchor: View,
    k: usize,
    opts: ApproxOptions,
) -> Result<(ApproxHits, ApproxReport), Error> {
    crate::index::search::check_query(index, anchor, k)?;
    for (arg, v) in [(Arg::Probe, opts.probe), (Arg::Rerank, opts.rerank)] {
        if v == 0 {
            return Err(Error::argument(arg, v, "must be at least 1"));
        }
    }
    let t = Instant::now();
    let views: Vec<AnnView> = anns.iter().map(AnnFile::view).collect();
    let dim = index.dim;
    let per_query = anchor
        .data
        .par_chunks(dim)
        .map_init(Scratch::default, |scratch, a| {
            let t = Instant::now();
            let mut keys = Vec::new();
            let mut bound = f64::INFINITY;
            let (mut est, mut exact) = (0u64, 0u64);
            for (shard, view) in index.shards.iter().zip(&views) {
                let (ids, b, seen) = candidates(view, a, k, opts, scratch);
                let new = rescore(shard, a, &ids, k, dim)
                    .map_err(|e| Error::data(shard.path.display(), format!("re-scoring: {e}")))?;
                keys = topk::merge([keys, new], k);
                bound = bound.min(b);
                (est, exact) = (est + seen as u64, exact + ids.len() as u64);
            }
            Ok((keys, bound, est, exact, t.elapsed()))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut report = ApproxReport::default();
    let mut keys = Vec::with_capacity(per_query.len());
    let mut bounds = Vec::with_capacity(per_query.len());
    for (kq, b, e, x, lat) in per_query {
        keys.push(kq);
        bounds.push(b);
        report.estimated += e;
        report.rescored += x;
        report.latencies.push(lat);
    }
    report.compute = t.elapsed();
    let hits = ApproxHits {
        keys,
        bound_sq: bounds,
    };
    Ok((hits, report))
}

/// Buffers a thread reuses from query to query.
#[derive(Default)]
struct Scratch {
    /// (estimate of vol², candidate) per entry seen.
    fast: Vec<(f32, u32)>,
    /// (candidate, a·û, |a·û| + ‖a‖·err) per entry seen, for the certificate.
    full: Vec<(u32, f64, f64)>,
}

/// One shard, one anchor: the candidates to score exactly (ascending ids), a lower bound on
/// vol² of every other candidate, and how many entries were estimated.
///
/// The bound needs every seen candidate's entries together; it can only be positive when
/// the cells not probed bound |a·u|/‖a‖ below 1/√m (else an unseen candidate may hold `a` in
/// its span). Otherwise each entry is ranked on its own (its estimate ignores the candidate's
/// other vectors, which lie in cells far from ±a) and the bound is 0.
fn candidates(
    v: &AnnView,
    a: &[f32],
    k: usize,
    opts: ApproxOptions,
    scratch: &mut Scratch,
) -> (Vec<u32>, f64, usize) {
    simd::vectorised_at(simd::level_or(Level::Avx512), || {
        let aa: f64 = a.iter().map(|x| *x as f64 * *x as f64).sum();
        let norm = aa.sqrt();
        let (cells, bmax) = probe(v, a, norm, opts.probe);
        let low = opts.low_w.min(v.n);
        let entries = |c: &usize| v.list_offsets[*c] as usize..v.list_offsets[*c + 1] as usize;
        let projection = |e: usize| {
            let code = &v.list_codes[e * v.dim..(e + 1) * v.dim];
            v.list_scale[e] * dot_code(a, code)
        };
        let mut best: Vec<u32>;
        let (bound, seen);
        if (v.m as f64) * bmax * bmax >= 1.0 && low < v.n {
            // Ranking only: the anchor too as int8, integer dot products (a third of the work of
            // converting each code to f32).
            let sa = a.iter().fold(0.0f32, |m, x| m.max(x.abs())) / 127.0;
            let qa: Vec<i8> = a
                .iter()
                .map(|x| if sa > 0.0 { (x / sa).round() as i8 } else { 0 })
                .collect();
            let fast = &mut scratch.fast;
            fast.clear();
            let aa32 = aa as f32;
            for e in cells.iter().flat_map(entries) {
                let code = &v.list_codes[e * v.dim..(e + 1) * v.dim];
                let p = v.list_scale[e] * sa * dot_i8(&qa, code) as f32;
                fast.push(((v.list_w[e] as f32) * (aa32 - p * p), v.list_ids[e]));
            }
            seen = fast.len();
            let r = opts.rerank.max(k).min(seen);
            if r < seen {
                fast.select_nth_unstable_by(r, |x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            }
            best = fast[..r].iter().map(|s| s.1).collect();
            bound = 0.0;
        } else {
            let sl = slack(v.dim) as f64;
            let full = &mut scratch.full;
            full.clear();
            for e in cells.iter().flat_map(entries) {
                let p = projection(e) as f64;
                let err = v.list_err[e] as f64 + sl * (1.0 + v.list_err[e] as f64);
                full.push((v.list_ids[e], p, p.abs() + norm * err));
            }
            seen = full.len();
            let (ids, seen_bound) = grouped(v, full, aa, bmax, opts.rerank.max(k));
            best = ids;
            let unseen_bound = if low < v.n {
                let w_next = v.w[v.by_w[low] as usize];
                w_next * aa * (1.0 - v.m as f64 * bmax * bmax).max(0.0)
            } else {
                f64::INFINITY
            };
            bound = seen_bound.min(unseen_bound);
        }
        best.extend_from_slice(&v.by_w[..low]);
        best.sort_unstable();
        best.dedup();
        (best, bound, seen)
    })
}

/// The entries of each seen candidate together: the `r` best estimates of vol², and a lower
/// bound on vol² of the others — each vector seen bounded by its code, each not seen (in a cell
/// not probed) by ‖a‖·`bmax`.
fn grouped(
    v: &AnnView,
    full: &mut [(u32, f64, f64)],
    aa: f64,
    bmax: f64,
    r: usize,
) -> (Vec<u32>, f64) {
    full.sort_unstable_by_key(|s| s.0);
    let unseen_sq = aa * bmax * bmax;
    let mut scored: Vec<(f64, f64, u32)> = full
        .chunk_by(|x, y| x.0 == y.0)
        .map(|g| {
            let j = g[0].0;
            let w = v.w[j as usize];
            let p2: f64 = g.iter().map(|s| s.1 * s.1).sum();
            let hi2: f64 =
                g.iter().map(|s| s.2 * s.2).sum::<f64>() + (v.m - g.len()) as f64 * unseen_sq;
            (w * (aa - p2), w * (aa - hi2.min(aa)).max(0.0), j)
        })
        .collect();
    let r = r.min(scored.len());
    if r < scored.len() {
        scored.select_nth_unstable_by(r, |x, y| x.0.total_cmp(&y.0).then(x.2.cmp(&y.2)));
    }
    let bound = scored[r..].iter().fold(f64::INFINITY, |b, s| b.min(s.1));
    (scored[..r].iter().map(|s| s.2).collect(), bound)
}

/// The `probe` cells whose centroids are nearest ±a (two levels: the nearest coarse cells
/// are opened, then their fine cells ranked), and the largest bound on |a·u|/‖a‖ over the
/// basis vectors u of every cell left unprobed.
fn probe(v: &AnnView, a: &[f32], norm: f64, probe: usize) -> (Vec<usize>, f64) {
    let d = v.dim;
    let sl = slack(d) as f64;
    let cos = |dot: f32| {
        if norm > 0.0 {
            (dot.abs() as f64 / norm + sl).min(1.0)
        } else {
            0.0
        }
    };
    // Cells in order of |a·f| (largest first), their centroids' cosine to ±a.
    let priority = |dot: f32| -dot as f64;
    let mut coarse: Vec<(f64, f32, usize)> = v
        .coarse
        .chunks_exact(d)
        .enumerate()
        .map(|(i, c)| {
            let dt = dot(a, c).abs();
            (priority(dt), dt, i)
        })
        .collect();
    let by_priority =
        |x: &(f64, f32, usize), y: &(f64, f32, usize)| x.0.total_cmp(&y.0).then(x.2.cmp(&y.2));
    let open = probe.min(coarse.len());
    if open < coarse.len() {
        coarse.select_nth_unstable_by(open, by_priority);
    }
    let mut bmax = coarse[open..].iter().fold(0.0f64, |b, &(_, dt, i)| {
        b.max(cell_bound(cos(dt), v.coarse_gamma[i]))
    });
    let mut fine: Vec<(f64, f32, usize)> = Vec::new();
    for &(_, _, i) in &coarse[..open] {
        for f in v.fine_offsets[i] as usize..v.fine_offsets[i + 1] as usize {
            let dt = dot(a, &v.fine[f * d..(f + 1) * d]).abs();
            fine.push((priority(dt), dt, f));
        }
    }
    let take = probe.min(fine.len());
    if take < fine.len() {
        fine.select_nth_unstable_by(take, by_priority);
    }
    bmax = fine[take..].iter().fold(bmax, |b, &(_, dt, f)| {
        b.max(cell_bound(cos(dt), v.fine_gamma[f]))
    });
    (fine[..take].iter().map(|x| x.2).collect(), bmax)
}

/// The largest cos(a, u) for u within angle φ (cos φ = `gamma`) of a centroid at angle α
/// from a (`cos_a` an upper bound on cos α): cos(max(0, α − φ)); 0 for an empty cell.
fn cell_bound(cos_a: f64, gamma: f32) -> f64 {
    if gamma > 1.0 {
        return 0.0;
    }
    let g = gamma as f64;
    if g <= 0.0 || cos_a >= g {
        return 1.0;
    }
    cos_a * g + (1.0 - cos_a * cos_a).max(0.0).sqrt() * (1.0 - g * g).sqrt()
}

/// a·x in f32, 16 lanes (vectorised by the caller's [`simd::vectorised_at`]).
#[inline(always)]
fn dot(a: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cx) = (a.chunks_exact(16), x.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cx.remainder())
        .map(|(p, q)| p * q)
        .sum();
    for (p, q) in ca.zip(cx) {
        for l in 0..16 {
            acc[l] += p[l] * q[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// x·y of int8 vectors, exactly (|x·y| ≤ D·127² < 2³¹ for D below 133,000), in lanes of i16
/// products summed in i32.
#[inline(always)]
fn dot_i8(x: &[i8], y: &[i8]) -> i32 {
    let mut acc = [0i32; 32];
    let (cx, cy) = (x.chunks_exact(32), y.chunks_exact(32));
    let tail: i32 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(a, b)| *a as i32 * *b as i32)
        .sum();
    for (a, b) in cx.zip(cy) {
        for l in 0..32 {
            acc[l] += (a[l] as i16 * b[l] as i16) as i32;
        }
    }
    acc.iter().sum::<i32>() + tail
}

/// a·q for an int8 code q, in f32 (as [`dot`]).
#[inline(always)]
fn dot_code(a: &[f32], q: &[i8]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cq) = (a.chunks_exact(16), q.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cq.remainder())
        .map(|(p, c)| p * *c as f32)
        .sum();
    for (p, c) in ca.zip(cq) {
        for l in 0..16 {
            acc[l] += p[l] * c[l] as f32;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The exact top-k of `ids` (ascending) of `shard` for anchor `a`, with the CPU backend's
/// kernel on the gathered rows and stored factors (the exact search's volumes, bit for bit).
fn rescore(
    shard: &Shard,
    a: &[f32],
    ids: &[u32],
    k: usize,
    dim: usize,
) -> Result<Vec<u64>, gram_nostd::GramError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mods = shard.modalities();
    let records = shard.records();
    let stride = records.len() / shard.rows;
    let rows: Vec<Vec<f32>> = mods
        .iter()
        .map(|x| {
            ids.iter()
                .flat_map(|&j| &x[j as usize * dim..(j as usize + 1) * dim])
                .copied()
                .collect()
        })
        .collect();
    let recs: Vec<f64> = ids
        .iter()
        .flat_map(|&j| &records[j as usize * stride..(j as usize + 1) * stride])
        .copied()
        .collect();
    let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    let factors = Factors::from_records(&recs, mods.len(), ids.len(), dim)?;
    let scorer = Scorer::with_factors(&refs, factors)?;
    let (local, _) = scorer.top_k_keys(a, k.min(ids.len()), 0)?;
    Ok(local[0]
        .iter()
        .map(|&key| {
            let (j, vol) = topk::unkey(key);
            topk::key(shard.first_row + ids[j as usize], vol)
        })
        .collect())
}
