//! Writing results atomically: a temporary file beside the target, renamed over it only once
//! complete, so a failed or interrupted run never leaves a partial output.

use crate::error::Error;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};

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

    /// The file itself, for positional writes: whatever went through [`AtomicFile::writer`]
    /// must have been flushed first.
    fn file(&self) -> &File {
        self.writer
            .as_ref()
            .expect("writer present until commit")
            .get_ref()
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

/// A row-major float32 .npy matrix written in blocks of whole rows, from several threads and in
/// any order, atomically (an [`AtomicFile`]: nothing at the target until [`NpyRows::commit`]).
///
/// Why not a buffer and one write at the end: at N = 4096 the 64 MiB result took as long to
/// reach the disk as the volumes took to compute. Here each block goes to the page cache as soon
/// as it is computed, and a background thread asks the system to write out what has arrived
/// (`sync_data`) while the rest is still being computed, so the fsync in `commit` waits only for
/// the last blocks; and the whole matrix is never held in memory.
pub struct NpyRows {
    /// Taken by commit; dropped without commit it removes the temporary file.
    file: Option<AtomicFile>,
    header_len: u64,
    row_bytes: u64,
    rows: usize,
    syncer: Option<(Sender<()>, JoinHandle<()>)>,
}

impl NpyRows {
    /// A `rows` × `cols` float32 matrix at `path` (written on commit).
    pub fn create(path: &Path, rows: usize, cols: usize) -> io::Result<NpyRows> {
        let mut file = AtomicFile::create(path)?;
        let header = npy_header_f32(&[rows, cols]);
        file.writer().write_all(&header)?;
        file.writer().flush()?;
        let early = file.file().try_clone()?;
        let (tx, rx) = mpsc::channel::<()>();
        let syncer = thread::spawn(move || {
            while rx.recv().is_ok() {
                while rx.try_recv().is_ok() {} // one sync covers every block written so far
                // An error here shows again in commit's fsync, which reports it.
                let _ = early.sync_data();
            }
        });
        Ok(NpyRows {
            file: Some(file),
            header_len: header.len() as u64,
            row_bytes: cols as u64 * 4,
            rows,
            syncer: Some((tx, syncer)),
        })
    }

    /// Write `block` (whole rows, row-major) as rows `first_row..`. Panics if they run past
    /// the matrix (a caller's bug).
    pub fn write_rows(&self, first_row: usize, block: &[f32]) -> io::Result<()> {
        let n = (block.len() as u64 * 4)
            .checked_div(self.row_bytes)
            .unwrap_or(0);
        assert!(
            first_row as u64 + n <= self.rows as u64
                && n * self.row_bytes == block.len() as u64 * 4,
            "NpyRows::write_rows past the matrix"
        );
        let offset = self.header_len + first_row as u64 * self.row_bytes;
        let file = self.file.as_ref().expect("present until commit");
        write_all_at(file.file(), bytemuck::cast_slice(block), offset)?;
        if let Some((tx, _)) = &self.syncer {
            let _ = tx.send(());
        }
        Ok(())
    }

    /// Wait for the background writer, then fsync and rename over the target. The caller must
    /// have written every row.
    pub fn commit(mut self) -> io::Result<()> {
        self.stop_syncer();
        self.file.take().expect("commit once").commit()
    }

    fn stop_syncer(&mut self) {
        if let Some((tx, handle)) = self.syncer.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Drop for NpyRows {
    fn drop(&mut self) {
        self.stop_syncer(); // then the AtomicFile removes the temporary file
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_write(file, buf, offset)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => {
                buf = &buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Write a uint32 array as .npy, atomically.
pub fn write_npy_u32(path: &Path, shape: &[usize], data: &[u32]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.writer().write_all(&npy_header("<u4", shape))?;
    f.writer().write_all(bytemuck::cast_slice(data))?;
    f.commit()
}

/// Write a little-endian float64 .npy file atomically.
pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.writer().write_all(&npy_header("<f8", shape))?;
    f.writer().write_all(bytemuck::cast_slice(data))?;
    f.commit()
}

/// Write a uint8 .npy file atomically.
pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.writer().write_all(&npy_header("|u1", shape))?;
    f.writer().write_all(data)?;
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

    /// Blocks written from several threads in reverse order read back as the matrix; a
    /// matrix dropped before commit leaves nothing, and the target only appears on commit.
    #[test]
    fn npy_rows_in_any_order_from_several_threads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npy");
        let (rows, cols) = (10, 3);
        let want: Vec<f32> = (0..rows * cols).map(|x| x as f32 * 0.5).collect();
        let m = NpyRows::create(&p, rows, cols).unwrap();
        std::thread::scope(|s| {
            for r0 in (0..rows).step_by(4).rev() {
                let (m, want) = (&m, &want);
                s.spawn(move || {
                    let r1 = (r0 + 4).min(rows);
                    m.write_rows(r0, &want[r0 * cols..r1 * cols]).unwrap()
                });
            }
        });
        assert!(!p.exists());
        m.commit().unwrap();
        let bytes = fs::read(&p).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[rows as u64, cols as u64]);
        assert_eq!(npy.into_vec::<f32>().unwrap(), want);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let q = dir.path().join("q.npy");
        let m = NpyRows::create(&q, rows, cols).unwrap();
        m.write_rows(0, &want[..cols]).unwrap();
        drop(m);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "only m.npy");
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
