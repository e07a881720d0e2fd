//! `gram index build`: factor candidates once and write them as an index, shard by shard.

use super::manifest::{FORMAT, Manifest, ShardEntry, Source, VERSION};
use crate::commands::check_modality_count as check_count;
use crate::cpu::Factors;
use crate::error::{Arg, Error};
use crate::input::{self, Matrix, View};
use crate::output;
use safetensors::{Dtype, tensor::TensorView};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shards hold about this many bytes of vectors unless `--shard-rows` says otherwise: big
/// enough that per-shard work is negligible, small enough to copy and check one at a time.
const SHARD_BYTES: usize = 1 << 30;

pub struct BuildOptions {
    /// The modality files (`--modality`), in order.
    pub modalities: Vec<String>,
    pub out: PathBuf,
    /// Global rows to index (`--rows START:END`); all rows when `None`.
    pub rows: Option<Range<usize>>,
    /// Candidates per shard file; `None` picks ~1 GiB of vectors per shard.
    pub shard_rows: Option<usize>,
    /// Also write each shard's approximate-search data (`--ann`, [`super::ann`]).
    pub ann: bool,
    pub progress: bool,
}

/// What a build did.
pub struct BuildReport {
    pub manifest: Manifest,
    pub bytes: u64,
    pub read: Duration,
    pub factor: Duration,
    pub write: Duration,
    /// Building and writing the approximate-search data (zero without `--ann`).
    pub ann: Duration,
}

/// Build the index: read (memory-mapped) and check the modalities, factor each shard's
/// candidates in parallel, write the shard (vectors straight from the map) and its checksum,
/// then the manifest; the directory appears at `--out` only when complete.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, Error> {
    check_count(opts.modalities.len())?;
    let t = Instant::now();
    let mats = opts
        .modalities
        .iter()
        .map(|m| input::load(m))
        .collect::<Result<Vec<_>, _>>()?;
    let views: Vec<_> = mats.iter().map(Matrix::view).collect();
    check_shapes(&views)?;
    let (n, dim) = (views[0].rows, views[0].cols);
    let rows = check_rows(opts.rows.clone(), n)?;
    let shard_rows = match opts.shard_rows {
        Some(0) => return Err(Error::argument(Arg::ShardRows, "0", "must be at least 1")),
        Some(s) => s,
        None => (SHARD_BYTES / (dim * 4 * views.len())).max(1),
    };
    let read = t.elapsed();
    let (mut factor, mut write, mut ann) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut manifest = new_manifest(&views, &rows);
    let bar = opts
        .progress
        .then(|| crate::report::progress_bar(rows.len() as u64));
    output::write_dir_atomically(&opts.out, super::MANIFEST, "gram index", |stage| {
        for (s, start) in rows.clone().step_by(shard_rows).enumerate() {
            let part = start..(start + shard_rows).min(rows.end);
            let t = Instant::now();
            let slices: Vec<&[f32]> = views
                .iter()
                .map(|v| &v.data[part.start * dim..part.end * dim])
                .collect();
            let factors = Factors::compute(&slices, part.len(), dim).map_err(|e| {
                Error::data(
                    opts.modalities.join(", "),
                    format!("rows {}..{}: {e}", part.start, part.end),
                )
            })?;
            factor += t.elapsed();
            let t = Instant::now();
            let mut entry = write_shard(stage, s, part.clone(), &slices, &factors, dim)?;
            write += t.elapsed();
            if opts.ann {
                let t = Instant::now();
                entry.ann = Some(ann_shard(stage, s, &part, &slices, dim, opts)?);
                ann += t.elapsed();
            }
            manifest.shards.push(entry);
            if let Some(b) = &bar {
                b.inc(part.len() as u64);
            }
        }
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        let path = stage.join(super::MANIFEST);
        output::write_text(&path, &text)
            .map_err(|e| Error::io(path.display(), format!("cannot write: {e}")))?;
        share_like(&path, stage, &manifest);
        Ok(())
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(BuildReport {
        bytes: manifest.shards.iter().map(|s| s.bytes).sum(),
        manifest,
        read,
        factor,
        write,
        ann,
    })
}

/// Shard `s`'s approximate-search file (seeded by its first row, so a rebuild is identical).
fn ann_shard(
    stage: &Path,
    s: usize,
    rows: &Range<usize>,
    slices: &[&[f32]],
    dim: usize,
    opts: &BuildOptions,
) -> Result<super::AnnEntry, Error> {
    let data =
        super::ann::build_shard(slices, rows.len(), dim, rows.start as u64).map_err(|e| {
            Error::data(
                opts.modalities.join(", "),
                format!("rows {}..{}: {e}", rows.start, rows.end),
            )
        })?;
    super::ann::write_ann(stage, s, &data)
}

/// Every modality [n, dim] like the first: row j of each belongs to candidate j.
fn check_shapes(views: &[View]) -> Result<(), Error> {
    let (n, dim) = (views[0].rows, views[0].cols);
    for v in &views[1..] {
        if (v.rows, v.cols) != (n, dim) {
            return Err(Error::data(
                v.name,
                format!(
                    "shape [{}, {}], but {} is [{n}, {dim}] (row j of every modality belongs to candidate j)",
                    v.rows, v.cols, views[0].name
                ),
            ));
        }
    }
    Ok(())
}

/// The manifest of an index of `rows` of `views`, before its shards are written.
fn new_manifest(views: &[View], rows: &Range<usize>) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        version: VERSION,
        k: views.len() + 1,
        dim: views[0].cols,
        first_row: rows.start as u64,
        rows: rows.len() as u64,
        sources: views
            .iter()
            .map(|v| Source {
                file: v.name.to_string(),
                rows: v.rows as u64,
            })
            .collect(),
        shards: Vec::new(),
        created_by: format!("gram {}", env!("CARGO_PKG_VERSION")),
    }
}

/// safetensors writes its files owner-only; give the shards the manifest's (umask)
/// permissions, so an index can be shared like any other file.
fn share_like(manifest_path: &Path, stage: &Path, manifest: &Manifest) {
    if let Ok(p) = std::fs::metadata(manifest_path).map(|m| m.permissions()) {
        for s in &manifest.shards {
            for f in std::iter::once(&s.file).chain(s.ann.as_ref().map(|a| &a.file)) {
                let _ = std::fs::set_permissions(stage.join(f), p.clone());
            }
        }
    }
}

/// `--rows START:END` within the `n` rows of the sources (ids must fit uint32).
fn check_rows(rows: Option<Range<usize>>, n: usize) -> Result<Range<usize>, Error> {
    let r = rows.unwrap_or(0..n);
    if r.start >= r.end || r.end > n {
        return Err(Error::argument(
            Arg::Rows,
            format!("{}:{}", r.start, r.end),
            format!("must be a non-empty range within the {n} rows of the modalities"),
        ));
    }
    if r.end > u32::MAX as usize + 1 {
        return Err(Error::argument(
            Arg::Rows,
            "",
            format!("{n} rows; candidate ids are uint32, so at most 2^32 rows can be indexed"),
        ));
    }
    Ok(r)
}

/// One shard file and its manifest entry.
fn write_shard(
    stage: &Path,
    s: usize,
    rows: Range<usize>,
    slices: &[&[f32]],
    factors: &Factors,
    dim: usize,
) -> Result<ShardEntry, Error> {
    let file = super::shard_file(s);
    let path = stage.join(&file);
    let fail = |e: &dyn std::fmt::Display| Error::io(path.display(), format!("cannot write: {e}"));
    let n = rows.len();
    let stride = factors.records().len() / n;
    let mut tensors = vec![(
        super::FACTORS.to_string(),
        TensorView::new(
            Dtype::F64,
            vec![n, stride],
            bytemuck::cast_slice(factors.records()),
        )
        .map_err(|e| fail(&e))?,
    )];
    for (t, x) in slices.iter().enumerate() {
        tensors.push((
            super::modality_tensor(t),
            TensorView::new(Dtype::F32, vec![n, dim], bytemuck::cast_slice(x))
                .map_err(|e| fail(&e))?,
        ));
    }
    let (bytes, xxh3_64) = super::write_checked(&path, tensors)?;
    Ok(ShardEntry {
        file,
        first_row: rows.start as u64,
        rows: n as u64,
        bytes,
        xxh3_64,
        ann: None,
    })
}
