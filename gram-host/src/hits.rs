//! Search hits on disk — `DIR/indices.npy` (uint32 [N1, k]) and `DIR/volumes.npy` (float32
//! [N1, k]), each row ascending by volume, ties by the smaller index; an approximate search
//! adds `DIR/bound.npy` (float64 \[N1\]: a lower bound on the volume of every candidate it did not
//! score exactly) and `DIR/certified.npy` (uint8 \[N1\]) — and the merge of hit directories that
//! searched disjoint candidates (shards on several machines).

use crate::cpu::topk;
use crate::error::{Arg, Error};
use crate::{input, output};
use std::path::{Path, PathBuf};

/// Write the hits of every anchor row (each `k` [`topk::key`]s, ascending) to `out`, created
/// if missing; each file written atomically.
pub fn write(out: &Path, rows: &[Vec<u64>], k: usize) -> Result<(), Error> {
    let (idx, vol): (Vec<u32>, Vec<f32>) =
        rows.iter().flatten().map(|&key| topk::unkey(key)).unzip();
    assert_eq!(idx.len(), rows.len() * k, "every row holds k hits");
    std::fs::create_dir_all(out)
        .map_err(|e| Error::io(out.display(), format!("cannot create: {e}")))?;
    let fail = |name: &str, e: std::io::Error| {
        Error::io(out.join(name).display(), format!("cannot write: {e}"))
    };
    output::write_npy_u32(&out.join("indices.npy"), &[rows.len(), k], &idx)
        .map_err(|e| fail("indices.npy", e))?;
    output::write_npy_f32(&out.join("volumes.npy"), &[rows.len(), k], &vol)
        .map_err(|e| fail("volumes.npy", e))
}

/// [`write()`], then the approximate search's per-row lower bounds on vol² (`bound_sq`) as
/// `bound.npy` (volumes) and whether each row is certified exact ([`crate::index::ann::certified`])
/// as `certified.npy`. Returns the number certified.
pub fn write_approx(
    out: &Path,
    rows: &[Vec<u64>],
    k: usize,
    bound_sq: &[f64],
) -> Result<usize, Error> {
    write(out, rows, k)?;
    let certified: Vec<u8> = rows
        .iter()
        .zip(bound_sq)
        .map(|(r, &b)| crate::index::ann::certified(r, k, b) as u8)
        .collect();
    let bound: Vec<f64> = bound_sq.iter().map(|b| b.sqrt()).collect();
    let fail = |name: &str, e: std::io::Error| {
        Error::io(out.join(name).display(), format!("cannot write: {e}"))
    };
    output::write_npy_f64(&out.join("bound.npy"), &[rows.len()], &bound)
        .map_err(|e| fail("bound.npy", e))?;
    output::write_npy_u8(&out.join("certified.npy"), &[rows.len()], &certified)
        .map_err(|e| fail("certified.npy", e))?;
    Ok(certified.iter().filter(|&&c| c == 1).count())
}

/// The squared bounds of an approximate search's hit directory (`bound.npy`), `None` for an
/// exact search's (it has none: everything was scored).
pub fn read_bounds(dir: &Path, rows: usize) -> Result<Option<Vec<f64>>, Error> {
    let path = dir.join("bound.npy");
    if !path.exists() {
        return Ok(None);
    }
    let shown = path.display().to_string();
    let (shape, b) = input::load_npy_f64(&shown)?;
    if shape != [rows] || b.iter().any(|v| v.is_nan() || *v < 0.0) {
        return Err(Error::data(
            &shown,
            format!("shape {shape:?} or values do not fit {rows} rows of non-negative bounds"),
        ));
    }
    Ok(Some(b.iter().map(|v| v * v).collect()))
}

/// Read a hit directory as rows of keys, checking that the two files agree and that every
/// row is ascending as `gram search` writes it.
pub fn read(dir: &Path) -> Result<Vec<Vec<u64>>, Error> {
    let ipath = dir.join("indices.npy").display().to_string();
    let vpath = dir.join("volumes.npy").display().to_string();
    let (shape, idx) = input::load_npy_u32(&ipath)?;
    let vol = input::load(&vpath)?;
    if shape.len() != 2 || shape[1] == 0 || (shape[0], shape[1]) != (vol.rows, vol.cols) {
        return Err(Error::data(
            &ipath,
            format!(
                "shape {shape:?} does not match {vpath} ([{}, {}])",
                vol.rows, vol.cols
            ),
        ));
    }
    let vols = vol.as_slice();
    let rows: Vec<Vec<u64>> = (0..vol.rows)
        .map(|i| {
            (0..vol.cols)
                .map(|c| topk::key(idx[i * vol.cols + c], vols[i * vol.cols + c]))
                .collect()
        })
        .collect();
    if let Some(i) = rows.iter().position(|r| r.windows(2).any(|w| w[0] >= w[1])) {
        return Err(Error::data(
            dir.display(),
            format!(
                "row {i} is not in ascending order of (volume, index) as gram search writes it"
            ),
        ));
    }
    Ok(rows)
}

/// `gram merge`: the `k` best hits of each anchor over hit directories of disjoint candidates
/// (the same anchors in the same order), exactly what one search over all of them gives.
pub fn merge(dirs: &[PathBuf], k: usize, out: &Path) -> Result<(), Error> {
    let parts = dirs
        .iter()
        .map(|d| read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let n1 = parts.first().map_or(0, Vec::len);
    if let Some((d, p)) = dirs.iter().zip(&parts).find(|(_, p)| p.len() != n1) {
        return Err(Error::data(
            d.display(),
            format!(
                "{} anchor rows, but {} has {n1} (merged hits must be of the same anchors)",
                p.len(),
                dirs[0].display()
            ),
        ));
    }
    let available: usize = parts.iter().map(|p| p.first().map_or(0, Vec::len)).sum();
    if k == 0 || k > available {
        return Err(Error::argument(
            Arg::TopK,
            k,
            format!("must be between 1 and the hits available per anchor ({available})"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (d, p) in dirs.iter().zip(&parts) {
        for &key in p.first().into_iter().flatten() {
            if !seen.insert(key as u32) {
                return Err(Error::data(
                    d.display(),
                    format!(
                        "candidate {} also appears in another hit directory (merged searches must cover disjoint candidates)",
                        key as u32
                    ),
                ));
            }
        }
    }
    let merged: Vec<Vec<u64>> = (0..n1)
        .map(|i| topk::merge(parts.iter().map(|p| p[i].iter().copied()), k))
        .collect();
    let bounds = dirs
        .iter()
        .map(|d| read_bounds(d, n1))
        .collect::<Result<Vec<_>, _>>()?;
    if bounds.iter().all(Option::is_none) {
        return write(out, &merged, k);
    }
    // An exact part bounds nothing (all of its candidates were scored).
    let bound: Vec<f64> = (0..n1)
        .map(|i| {
            bounds
                .iter()
                .flatten()
                .fold(f64::INFINITY, |b, p| b.min(p[i]))
        })
        .collect();
    write_approx(out, &merged, k, &bound).map(|_| ())
}
