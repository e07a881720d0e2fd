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
use std::ops::Range;
use std::time::{Duration, Instant};

/// The knobs that trade recall for speed, per shard. The defaults reach a recall@10 of 0.95 on
/// the embeddings of a trained model in shards of 2¹⁸ candidates (`scripts/ann-bench.sh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApproxOptions {
    /// Cells probed (of ~n·(k−1)/[`super::LIST_TARGET`]).
    pub probe: usize,
    /// Smallest-w candidates always estimated.
    pub low_w: usize,
    /// Best estimates re-scored exactly, per shard (at least the top-k's k).
    pub rerank: usize,
}

impl Default for ApproxOptions {
    fn default() -> ApproxOptions {
        ApproxOptions {
            probe: 128,
            low_w: 32,
            rerank: 200,
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

/// Queries answered together. A query alone reads every code of its probed cells from memory
/// (~64 MB a query at `--probe 128` over 10^6 × 512), so its scan is bound by memory
/// bandwidth; a batch reads each probed cell once for all the batch's queries that probe it
/// (a cell's codes stay in cache between them). A query's latency is its batch's.
const BATCH: usize = 1024;

/// For every row of `anchor`: the `k` best candidates found (as [`topk::key`]s, volumes
/// exactly as the exact search computes them, ascending, ties by the smaller row) and a lower
/// bound on vol² of every candidate not scored exactly ([`super::certified`] says whether the
/// top-k is thereby exact). Queries run in batches of 1,024, each over every shard in
/// turn; the result does not depend on the batching or the thread count.
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
    let mut report = ApproxReport::default();
    let mut hits = ApproxHits {
        keys: Vec::new(),
        bound_sq: Vec::new(),
    };
    for batch in anchor.data.chunks(BATCH * dim) {
        let tb = Instant::now();
        let queries: Vec<Query> = batch.par_chunks(dim).map(Query::new).collect();
        let found: Vec<Vec<Found>> = views
            .iter()
            .map(|v| candidates(v, &queries, k, opts))
            .collect();
        let answers = (0..queries.len())
            .into_par_iter()
            .map(|i| answer(index, &found, i, queries[i].a, k))
            .collect::<Result<Vec<_>, Error>>()?;
        for (keys, bound, seen, exact) in answers {
            hits.keys.push(keys);
            hits.bound_sq.push(bound);
            report.estimated += seen;
            report.rescored += exact;
        }
        report
            .latencies
            .extend(std::iter::repeat_n(tb.elapsed(), queries.len()));
    }
    report.compute = t.elapsed();
    Ok((hits, report))
}

/// What one shard's candidate generation found for one query.
struct Found {
    /// The `rerank` best estimates (vol², candidate) of a query only ranked.
    ranked: Vec<(f32, u32)>,
    /// Candidates scored exactly whatever the ranking: the low-w list, and for a query with a
    /// bound the best of its grouped estimates.
    exact: Vec<u32>,
    bound: f64,
    seen: usize,
}

/// Query `i` over every shard: each shard's `ranked` and `exact` candidates scored exactly and
/// merged (per shard, so that a search of an index is the merge of searches of its shards, as
/// `gram merge` and a distributed search combine them). Returns the top-k keys, the bound, and
/// the counts estimated and scored exactly.
fn answer(
    index: &Index,
    found: &[Vec<Found>],
    i: usize,
    a: &[f32],
    k: usize,
) -> Result<(Vec<u64>, f64, u64, u64), Error> {
    let (mut keys, mut bound, mut seen, mut exact) = (Vec::new(), f64::INFINITY, 0u64, 0u64);
    for (shard, f) in index.shards.iter().zip(found) {
        let f = &f[i];
        let mut ids = f.exact.clone();
        ids.extend(f.ranked.iter().map(|x| x.1));
        ids.sort_unstable();
        ids.dedup();
        let new = rescore(shard, a, &ids, k, index.dim)
            .map_err(|e| Error::data(shard.path.display(), format!("re-scoring: {e}")))?;
        keys = topk::merge([keys, new], k);
        bound = bound.min(f.bound);
        (seen, exact) = (seen + f.seen as u64, exact + ids.len() as u64);
    }
    Ok((keys, bound, seen, exact))
}

/// An anchor as the scan reads it: its squared norm, and its int8 code (held as i16) for the
/// integer dot products that rank entries (scale `sa`: a ≈ sa·q16).
struct Query<'a> {
    a: &'a [f32],
    aa: f64,
    q16: Vec<i16>,
    sa: f32,
}

impl<'a> Query<'a> {
    fn new(a: &'a [f32]) -> Query<'a> {
        let aa: f64 = a.iter().map(|x| *x as f64 * *x as f64).sum();
        let sa = a.iter().fold(0.0f32, |m, x| m.max(x.abs())) / 127.0;
        let q16 = a
            .iter()
            .map(|x| if sa > 0.0 { (x / sa).round() as i16 } else { 0 })
            .collect();
        Query { a, aa, q16, sa }
    }
}

/// One shard, every query of a batch: per query the candidates to score exactly (ascending
/// ids), a lower bound on vol² of every other candidate, and how many entries were estimated.
///
/// The bound needs every seen candidate's entries together; it can only be positive when
/// the cells not probed bound |a·u|/‖a‖ below 1/√m (else an unseen candidate may hold `a` in
/// its span): such a query is searched on its own ([`bounded`]). The others rank each entry on
/// its own (its estimate ignores the candidate's other vectors, which lie in cells far from
/// ±a), cell by cell for the whole batch ([`ranked`]), and their bound is 0.
fn candidates(v: &AnnView, queries: &[Query], k: usize, opts: ApproxOptions) -> Vec<Found> {
    let level = simd::level_or(Level::Avx512);
    let probes: Vec<(Vec<usize>, f64)> = queries
        .par_iter()
        .map(|q| simd::vectorised_at(level, || probe(v, q.a, q.aa.sqrt(), opts.probe)))
        .collect();
    let low = opts.low_w.min(v.n);
    let r = opts.rerank.max(k);
    let rank_only = |bmax: f64| (v.m as f64) * bmax * bmax >= 1.0 && low < v.n;
    let mut visits: Vec<(u32, u32)> = probes
        .iter()
        .enumerate()
        .filter(|(_, (_, bmax))| rank_only(*bmax))
        .flat_map(|(i, (cells, _))| cells.iter().map(move |&c| (c as u32, i as u32)))
        .collect();
    visits.par_sort_unstable();
    let ranked = ranked(v, queries, &visits, r);
    probes
        .into_par_iter()
        .zip(queries)
        .zip(ranked)
        .map(|(((cells, bmax), q), (ranked, seen))| {
            let mut exact = v.by_w[..low].to_vec();
            if rank_only(bmax) {
                return Found {
                    ranked,
                    exact,
                    bound: 0.0,
                    seen,
                };
            }
            let (ids, bound, seen) =
                simd::vectorised_at(level, || bounded(v, q, &cells, bmax, low, r));
            exact.extend(ids);
            Found {
                ranked: Vec::new(),
                exact,
                bound,
                seen,
            }
        })
        .collect()
}

/// The ranking scan of a batch: `visits` holds (cell, query) pairs in cell order; each cell's
/// codes are scanned for every query visiting it. Per query: its `r` best (estimate of vol²,
/// candidate) in the order (estimate, candidate), and how many entries it estimated.
fn ranked(
    v: &AnnView,
    queries: &[Query],
    visits: &[(u32, u32)],
    r: usize,
) -> Vec<(Vec<(f32, u32)>, usize)> {
    let level = simd::level_or(Level::Avx512);
    let keep = |buf: &mut Vec<(f32, u32)>| {
        if buf.len() > r {
            buf.select_nth_unstable_by(r, |x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            buf.truncate(r);
        }
    };
    let empty = || vec![(Vec::new(), 0usize); queries.len()];
    let mut out = visits
        .par_chunk_by(|x, y| x.0 == y.0)
        .fold(empty, |mut acc, group| {
            let cell = group[0].0 as usize;
            let entries = v.list_offsets[cell] as usize..v.list_offsets[cell + 1] as usize;
            for &(_, i) in group {
                let (q, (buf, seen)) = (&queries[i as usize], &mut acc[i as usize]);
                scan(level, v, entries.clone(), q, buf);
                *seen += entries.len();
                if buf.len() >= 4 * r.max(64) {
                    keep(buf);
                }
            }
            acc
        })
        .reduce(empty, |mut a, b| {
            for ((x, sx), (y, sy)) in a.iter_mut().zip(b) {
                x.extend(y);
                *sx += sy;
                keep(x);
            }
            a
        });
    out.iter_mut().for_each(|(buf, _)| keep(buf));
    out
}

/// Appends to `buf` the estimate of vol² (from the integer dot product of the codes with the
/// query's) and the candidate of every entry in `entries`, with the widest kernel `level`
/// allows. The dot products are exact integers, so every kernel gives the same estimates.
fn scan(level: Level, v: &AnnView, entries: Range<usize>, q: &Query, buf: &mut Vec<(f32, u32)>) {
    #[cfg(target_arch = "x86_64")]
    if level <= Level::detect() {
        match level {
            // SAFETY (both): the CPU has the level's features (checked just above).
            Level::Avx512 => {
                return unsafe { scan_entries(v, entries, q, buf, |c| dot_i8_avx512(&q.q16, c)) };
            }
            Level::Avx2 => {
                return unsafe { scan_entries(v, entries, q, buf, |c| dot_i8_avx2(&q.q16, c)) };
            }
            Level::Baseline => {}
        }
    }
    let _ = level;
    scan_entries(v, entries, q, buf, |c| dot_i8(&q.q16, c))
}

#[inline(always)]
fn scan_entries(
    v: &AnnView,
    entries: Range<usize>,
    q: &Query,
    buf: &mut Vec<(f32, u32)>,
    dot: impl Fn(&[i8]) -> i32,
) {
    let aa = q.aa as f32;
    for e in entries {
        let p = v.list_scale[e] * q.sa * dot(&v.list_codes[e * v.dim..(e + 1) * v.dim]) as f32;
        buf.push(((v.list_w[e] as f32) * (aa - p * p), v.list_ids[e]));
    }
}

/// x·y for the query x (int8 values widened to i16) and a code y, exactly (|x·y| ≤ D·127²
/// < 2³¹ for D below 133,000).
fn dot_i8(x: &[i16], y: &[i8]) -> i32 {
    x.iter().zip(y).map(|(a, b)| *a as i32 * *b as i32).sum()
}

/// [`dot_i8`] with AVX-512BW: 32 codes widened to i16 and multiplied in pairs summed to i32
/// (`vpmaddwd`, exact: |a·b| ≤ 2·127² per pair).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn dot_i8_avx512(x: &[i16], y: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 ≤ n, both slices hold n elements; unaligned loads.
        let (a, b) = unsafe {
            (
                _mm512_loadu_si512(x.as_ptr().add(i).cast()),
                _mm512_cvtepi8_epi16(_mm256_loadu_si256(y.as_ptr().add(i).cast())),
            )
        };
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
        i += 32;
    }
    _mm512_reduce_add_epi32(acc) + dot_i8(&x[i..n], &y[i..n])
}

/// [`dot_i8`] with AVX2, 16 codes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_i8_avx2(x: &[i16], y: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 ≤ n, both slices hold n elements; unaligned loads.
        let (a, b) = unsafe {
            (
                _mm256_loadu_si256(x.as_ptr().add(i).cast()),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(y.as_ptr().add(i).cast())),
            )
        };
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
        i += 16;
    }
    let mut lanes = [0i32; 8];
    // SAFETY: lanes holds 8 i32.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
    lanes.iter().sum::<i32>() + dot_i8(&x[i..n], &y[i..n])
}

/// One query whose unprobed cells are bounded: every entry seen kept with its error bound, the
/// entries grouped per candidate ([`grouped`]) for the best `r` estimates and a lower bound on
/// vol² of every candidate not among them (seen or not).
fn bounded(
    v: &AnnView,
    q: &Query,
    cells: &[usize],
    bmax: f64,
    low: usize,
    r: usize,
) -> (Vec<u32>, f64, usize) {
    let norm = q.aa.sqrt();
    let sl = slack(v.dim) as f64;
    let mut full = Vec::new();
    for c in cells {
        for e in v.list_offsets[*c] as usize..v.list_offsets[*c + 1] as usize {
            let code = &v.list_codes[e * v.dim..(e + 1) * v.dim];
            let p = (v.list_scale[e] * dot_code(q.a, code)) as f64;
            let err = v.list_err[e] as f64 + sl * (1.0 + v.list_err[e] as f64);
            full.push((v.list_ids[e], p, p.abs() + norm * err));
        }
    }
    let seen = full.len();
    let (ids, seen_bound) = grouped(v, &mut full, q.aa, bmax, r);
    let unseen_bound = if low < v.n {
        let w_next = v.w[v.by_w[low] as usize];
        w_next * q.aa * (1.0 - v.m as f64 * bmax * bmax).max(0.0)
    } else {
        f64::INFINITY
    };
    (ids, seen_bound.min(unseen_bound), seen)
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
            let mut out = Vec::with_capacity(ids.len() * dim);
            for &j in ids {
                out.extend_from_slice(&x[j as usize * dim..(j as usize + 1) * dim]);
            }
            out
        })
        .collect();
    let mut recs = Vec::with_capacity(ids.len() * stride);
    for &j in ids {
        recs.extend_from_slice(&records[j as usize * stride..(j as usize + 1) * stride]);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_integer_dot_kernel_is_exact() {
        let mut rng = super::super::kmeans::SplitMix64(7);
        for n in [0, 1, 15, 16, 31, 32, 33, 100, 512, 515] {
            let x: Vec<i16> = (0..n).map(|_| rng.below(255) as i16 - 127).collect();
            let y: Vec<i8> = (0..n)
                .map(|_| (rng.below(255) as i16 - 127) as i8)
                .collect();
            let want: i64 = x.iter().zip(&y).map(|(a, b)| *a as i64 * *b as i64).sum();
            assert_eq!(dot_i8(&x, &y) as i64, want, "n = {n}");
            #[cfg(target_arch = "x86_64")]
            {
                if Level::detect() >= Level::Avx2 {
                    // SAFETY: the CPU has AVX2.
                    assert_eq!(unsafe { dot_i8_avx2(&x, &y) } as i64, want, "avx2, n = {n}");
                }
                if Level::detect() >= Level::Avx512 {
                    // SAFETY: the CPU has AVX-512 F/BW.
                    assert_eq!(
                        unsafe { dot_i8_avx512(&x, &y) } as i64,
                        want,
                        "avx512, n = {n}"
                    );
                }
            }
        }
    }
}
