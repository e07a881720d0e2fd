//! Writing results atomically: a temporary file beside the target, renamed over it only once
//! complete, so a failed or interrupted run never leaves a partial output.

use crate::error::Error;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written; becomes `target` on [`AtomicFile::commit`], vanishes if dropped first.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let temp = dir.join(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&temp)?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer.as_mut().expect("writer present until commit")
    }

    /// Flush, fsync and rename over the target.
    pub fn commit(mut self) -> io::Result<()> {
        let w = self.writer.take().expect("commit once");
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.target)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The .npy v1.0 header for a C-order little-endian float32 array of `shape`.
pub fn npy_header_f32(shape: &[usize]) -> Vec<u8> {
    npy_header("<f4", shape)
}

/// The .npy v1.0 header for a C-order array of numpy type `descr` (e.g. `<f4`, `<u4`).
pub fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + dict + '\n' must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut h = Vec::with_capacity(10 + dict.len());
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

/// Write a float32 array as .npy, atomically.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.writer().write_all(&npy_header_f32(shape))?;
    f.writer().write_all(bytemuck::cast_slice(data))?;
    f.commit()
}

/// Write a uint32 array as .npy, atomically.
pub fn write_npy_u32(path: &Path, shape: &[usize], data: &[u32]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.writer().write_all(&npy_header("<u4", shape))?;
    f.writer().write_all(bytemuck::cast_slice(data))?;
    f.commit()
}

/// Write text (JSON, markdown), atomically.
pub fn write_text(path: &Path, text: &str) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.writer().write_all(text.as_bytes())?;
    f.commit()
}

/// Build a directory of results in a staging directory beside `out` (`fill` writes into it),
/// then rename it into place, so a failed or interrupted run never leaves a partial one. An
/// existing `out` is replaced only if it holds `marker` (a previous result of the same kind,
/// called `what` in the message) or is empty — never other data.
pub fn write_dir_atomically(
    out: &Path,
    marker: &str,
    what: &str,
    fill: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let shown = out.display();
    if out.exists() && !out.join(marker).is_file() {
        let empty = out
            .read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Error::data(
                &shown,
                format!("exists and is not a {what}; choose another --out"),
            ));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| Error::data(&shown, "not a directory name"))?
        .to_string_lossy();
    let stage = parent.join(format!(".{name}.partial-{}", std::process::id()));
    fs::create_dir_all(&stage)
        .map_err(|e| Error::io(stage.display(), format!("cannot create: {e}")))?;
    let result = fill(&stage).and_then(|()| {
        if out.exists() {
            fs::remove_dir_all(out)
                .map_err(|e| Error::io(&shown, format!("cannot replace: {e}")))?;
        }
        fs::rename(&stage, out).map_err(|e| Error::io(&shown, format!("cannot create: {e}")))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&stage);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_roundtrip_through_npyz() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        write_npy_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let bytes = fs::read(&p).unwrap();
        assert_eq!((npy_header_f32(&[2, 3]).len()) % 64, 0);
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[2, 3]);
        assert_eq!(
            npy.into_vec::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]
        );
        // Nothing else left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("y.npy");
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.writer().write_all(b"partial").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
