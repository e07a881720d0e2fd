//! Opening indexes for search: the manifest, then every shard mapped and checked (size,
//! checksum, layout) before any of it is used.

use super::manifest::Manifest;
use crate::cpu::Factors;
use crate::error::{Arg, Error};
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One or more indexes of disjoint row ranges of one corpus, opened together.
pub struct Index {
    pub k: usize,
    pub dim: usize,
    /// Every shard, by ascending first row.
    pub shards: Vec<Shard>,
}

/// A mapped, checked shard file.
pub struct Shard {
    pub path: PathBuf,
    pub first_row: u32,
    pub rows: usize,
    map: Mmap,
    modalities: Vec<Range<usize>>,
    factors: Range<usize>,
    /// The approximate-search file of this shard, if the index was built with `--ann`.
    pub ann: Option<super::AnnEntry>,
}

impl Index {
    /// Open the index directories `dirs`. Refuses, with the file and the problem: a missing,
    /// foreign or malformed manifest; a shard that is missing, of another size, with another
    /// checksum, or not the tensors the manifest implies; indexes that differ in k or D or
    /// whose rows overlap.
    pub fn open(dirs: &[PathBuf]) -> Result<Index, Error> {
        let manifests = dirs
            .iter()
            .map(|d| Manifest::read(d).map(|m| (d, m)))
            .collect::<Result<Vec<_>, _>>()?;
        let (first, m0) = manifests
            .first()
            .ok_or_else(|| Error::missing(Arg::Index, ""))?;
        let mut spans = Vec::new();
        for (dir, m) in &manifests {
            if (m.k, m.dim) != (m0.k, m0.dim) {
                return Err(Error::data(
                    dir.display(),
                    format!(
                        "k = {}, D = {}, but {} has k = {}, D = {} (indexes searched together must match)",
                        m.k,
                        m.dim,
                        first.display(),
                        m0.k,
                        m0.dim
                    ),
                ));
            }
            spans.push((m.first_row, m.first_row + m.rows, *dir));
        }
        spans.sort();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(Error::data(
                    w[0].2.display(),
                    format!(
                        "(rows {}..{}) and {} (rows {}..{}) overlap: searched together, indexes must hold disjoint rows",
                        w[0].0,
                        w[0].1,
                        w[1].2.display(),
                        w[1].0,
                        w[1].1
                    ),
                ));
            }
        }
        let entries: Vec<_> = manifests
            .iter()
            .flat_map(|(dir, m)| m.shards.iter().map(move |s| (dir, m, s)))
            .collect();
        let mut shards = entries
            .par_iter()
            .map(|(dir, m, s)| Shard::open(&dir.join(&s.file), m, s))
            .collect::<Result<Vec<_>, _>>()?;
        shards.sort_by_key(|s| s.first_row);
        Ok(Index {
            k: m0.k,
            dim: m0.dim,
            shards,
        })
    }

    /// Total number of candidates.
    pub fn rows(&self) -> usize {
        self.shards.iter().map(|s| s.rows).sum()
    }
}

impl Shard {
    fn open(path: &Path, m: &Manifest, entry: &super::ShardEntry) -> Result<Shard, Error> {
        let shown = path.display().to_string();
        let fail = |p: String| Error::data(&shown, p);
        let io = |p: String| Error::io(&shown, p);
        let file = std::fs::File::open(path).map_err(|e| io(format!("cannot open: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| io(format!("cannot stat: {e}")))?
            .len();
        if len != entry.bytes {
            return Err(fail(format!(
                "{len} bytes, the manifest says {} (truncated or replaced)",
                entry.bytes
            )));
        }
        // SAFETY: read-only private map; a concurrent truncation faults rather than returning
        // wrong data (the same trade-off as the input files, see input.rs).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io(format!("cannot map: {e}")))?;
        if super::checksum(&map) != entry.xxh3_64 {
            return Err(fail(format!(
                "checksum {} differs from the manifest's {} (the file is damaged)",
                super::checksum(&map),
                entry.xxh3_64
            )));
        }
        let (rows, dim, vectors) = (entry.rows as usize, m.dim, m.k - 1);
        let st = SafeTensors::deserialize(&map).map_err(|e| fail(format!("not a shard: {e}")))?;
        let base = map.as_ptr() as usize;
        let tensor = |name: &str, dtype: Dtype, shape: [usize; 2]| -> Result<Range<usize>, Error> {
            let (range, found) = tensor_at(&st, base, name, dtype).map_err(fail)?;
            if found != shape {
                return Err(fail(format!(
                    "tensor `{name}` is {dtype:?} {found:?}, expected {dtype:?} {shape:?}"
                )));
            }
            Ok(range)
        };
        let ann = entry.ann.clone();
        if st.len() != vectors + 1 {
            return Err(fail(format!(
                "{} tensors, expected {}",
                st.len(),
                vectors + 1
            )));
        }
        let factors = tensor(super::FACTORS, Dtype::F64, [rows, Factors::stride(vectors)])?;
        let modalities = (0..vectors)
            .map(|t| tensor(&super::modality_tensor(t), Dtype::F32, [rows, dim]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Shard {
            path: path.to_path_buf(),
            first_row: entry.first_row as u32,
            rows,
            map,
            modalities,
            factors,
            ann,
        })
    }

    /// The shard's vectors, one [rows, D] slice per modality.
    pub fn modalities(&self) -> Vec<&[f32]> {
        self.modalities
            .iter()
            .map(|r| bytemuck::cast_slice(&self.map[r.clone()]))
            .collect()
    }

    /// The shard's factor records as stored, unchecked ([`Factors::from_records`] checks the
    /// ones a caller takes).
    pub fn records(&self) -> &[f64] {
        bytemuck::cast_slice(&self.map[self.factors.clone()])
    }

    /// The shard's candidate factors, every record checked.
    pub fn factors(&self, dim: usize) -> Result<Factors<'_>, Error> {
        let records: &[f64] = bytemuck::cast_slice(&self.map[self.factors.clone()]);
        Factors::from_records(records, self.modalities.len(), self.rows, dim).map_err(|e| {
            Error::data(
                self.path.display(),
                format!("damaged candidate factors ({e})"),
            )
        })
    }
}

/// The byte range (in the mapped file at `base`) and shape of tensor `name`, which must be of
/// `dtype` and aligned for it.
pub(super) fn tensor_at(
    st: &SafeTensors,
    base: usize,
    name: &str,
    dtype: Dtype,
) -> Result<(Range<usize>, Vec<usize>), String> {
    let t = st.tensor(name).map_err(|_| format!("no tensor `{name}`"))?;
    if t.dtype() != dtype {
        return Err(format!(
            "tensor `{name}` is {:?}, expected {dtype:?}",
            t.dtype()
        ));
    }
    let start = t.data().as_ptr() as usize - base;
    if !start.is_multiple_of(dtype.bitsize().div_ceil(8)) {
        return Err(format!("tensor `{name}` is not aligned"));
    }
    Ok((start..start + t.data().len(), t.shape().to_vec()))
}
