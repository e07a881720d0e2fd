//! A shard's approximate-search data on disk: `ann-NNNNN.safetensors` beside the shard, named
//! with its size and checksum in the manifest's shard entry, mapped and checked on open.

use super::{AnnData, AnnView};
use crate::error::Error;
use crate::index::AnnEntry;
use crate::index::open::tensor_at;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::ops::Range;
use std::path::Path;

/// Write `data` as `stage/ann-NNNNN.safetensors` (shard `s`); returns its manifest entry.
pub fn write_ann(stage: &Path, s: usize, data: &AnnData) -> Result<AnnEntry, Error> {
    let file = crate::index::ann_file(s);
    let path = stage.join(&file);
    let fail =
        |e: safetensors::SafeTensorError| Error::io(path.display(), format!("cannot write: {e}"));
    let (d, e) = (data.dim, data.list_ids.len());
    let f32s: [(&str, &[f32], Vec<usize>); 6] = [
        ("coarse", &data.coarse, vec![data.coarse_gamma.len(), d]),
        (
            "coarse_gamma",
            &data.coarse_gamma,
            vec![data.coarse_gamma.len()],
        ),
        ("fine", &data.fine, vec![data.fine_gamma.len(), d]),
        ("fine_gamma", &data.fine_gamma, vec![data.fine_gamma.len()]),
        ("list_scale", &data.list_scale, vec![e]),
        ("list_err", &data.list_err, vec![e]),
    ];
    let u32s: [(&str, &[u32]); 4] = [
        ("fine_offsets", &data.fine_offsets),
        ("list_offsets", &data.list_offsets),
        ("list_ids", &data.list_ids),
        ("by_w", &data.by_w),
    ];
    let mut tensors = Vec::new();
    for (name, x, shape) in f32s {
        let t = TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(x)).map_err(fail)?;
        tensors.push((name.to_string(), t));
    }
    for (name, x) in u32s {
        let t =
            TensorView::new(Dtype::U32, vec![x.len()], bytemuck::cast_slice(x)).map_err(fail)?;
        tensors.push((name.to_string(), t));
    }
    for (name, x) in [("w", &data.w), ("list_w", &data.list_w)] {
        let t =
            TensorView::new(Dtype::F64, vec![x.len()], bytemuck::cast_slice(x)).map_err(fail)?;
        tensors.push((name.to_string(), t));
    }
    let codes = TensorView::new(
        Dtype::I8,
        vec![e, d],
        bytemuck::cast_slice(&data.list_codes),
    )
    .map_err(fail)?;
    tensors.push(("list_codes".to_string(), codes));
    let (bytes, xxh3_64) = crate::index::write_checked(&path, tensors)?;
    Ok(AnnEntry {
        file,
        bytes,
        xxh3_64,
    })
}

/// A mapped, checked approximate-search file.
pub struct AnnFile {
    map: Mmap,
    n: usize,
    m: usize,
    dim: usize,
    /// Byte ranges in `map`, in the order of [`NAMES`].
    ranges: Vec<Range<usize>>,
}

/// The tensors of the file and their types, in the order [`AnnFile::view`] reads them.
const NAMES: [(&str, Dtype); 13] = [
    ("coarse", Dtype::F32),
    ("coarse_gamma", Dtype::F32),
    ("fine", Dtype::F32),
    ("fine_gamma", Dtype::F32),
    ("fine_offsets", Dtype::U32),
    ("list_offsets", Dtype::U32),
    ("list_ids", Dtype::U32),
    ("list_codes", Dtype::I8),
    ("list_scale", Dtype::F32),
    ("list_err", Dtype::F32),
    ("list_w", Dtype::F64),
    ("w", Dtype::F64),
    ("by_w", Dtype::U32),
];

impl AnnFile {
    /// Map `dir/entry.file`, the file of a shard of `n` candidates of `m` vectors of length
    /// `dim`, and check it: size and checksum as the manifest says, the tensors and every
    /// invariant of [`AnnView::check`].
    pub fn open(
        dir: &Path,
        entry: &AnnEntry,
        n: usize,
        m: usize,
        dim: usize,
    ) -> Result<AnnFile, Error> {
        let path = dir.join(&entry.file);
        let shown = path.display().to_string();
        let fail = |p: String| Error::data(&shown, p);
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(&shown, format!("cannot open: {e}")))?;
        // SAFETY: read-only private map, as for the shards (open.rs).
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::io(&shown, format!("cannot map: {e}")))?;
        if map.len() as u64 != entry.bytes {
            return Err(fail(format!(
                "{} bytes, the manifest says {} (truncated or replaced)",
                map.len(),
                entry.bytes
            )));
        }
        let sum = crate::index::checksum(&map);
        if sum != entry.xxh3_64 {
            return Err(fail(format!(
                "checksum {sum} differs from the manifest's {} (the file is damaged)",
                entry.xxh3_64
            )));
        }
        let st = SafeTensors::deserialize(&map)
            .map_err(|e| fail(format!("not an approximate-search file: {e}")))?;
        if st.len() != NAMES.len() {
            return Err(fail(format!(
                "{} tensors, expected {}",
                st.len(),
                NAMES.len()
            )));
        }
        let base = map.as_ptr() as usize;
        let ranges = NAMES
            .iter()
            .map(|&(name, dtype)| tensor_at(&st, base, name, dtype).map(|(r, _)| r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        drop(st);
        let ann = AnnFile {
            map,
            n,
            m,
            dim,
            ranges,
        };
        ann.view().check().map_err(fail)?;
        Ok(ann)
    }

    pub fn view(&self) -> AnnView<'_> {
        let bytes = |i: usize| &self.map[self.ranges[i].clone()];
        let f32s = |i: usize| -> &[f32] { bytemuck::cast_slice(bytes(i)) };
        let u32s = |i: usize| -> &[u32] { bytemuck::cast_slice(bytes(i)) };
        AnnView {
            n: self.n,
            m: self.m,
            dim: self.dim,
            coarse: f32s(0),
            coarse_gamma: f32s(1),
            fine: f32s(2),
            fine_gamma: f32s(3),
            fine_offsets: u32s(4),
            list_offsets: u32s(5),
            list_ids: u32s(6),
            list_codes: bytemuck::cast_slice(bytes(7)),
            list_scale: f32s(8),
            list_err: f32s(9),
            list_w: bytemuck::cast_slice(bytes(10)),
            w: bytemuck::cast_slice(bytes(11)),
            by_w: u32s(12),
        }
    }
}
