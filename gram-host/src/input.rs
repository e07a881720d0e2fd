//! Reading embedding matrices: `.npy` (float32/float64/float16, either byte order, C order) or
//! `file.safetensors:tensor`. Little-endian float32 data is memory-mapped, not copied; other
//! types are converted to f32 once. Every problem becomes an [`InputError`] naming the file.

use memmap2::Mmap;
use std::fmt;
use std::fs::File;

/// A problem with one input file.
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub file: String,
    pub problem: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

impl std::error::Error for InputError {}

fn err<T>(file: &str, problem: impl Into<String>) -> Result<T, InputError> {
    Err(InputError {
        file: file.to_string(),
        problem: problem.into(),
    })
}

/// A row-major [rows, cols] float32 matrix, mapped from its file or converted into memory.
pub struct Matrix {
    /// What the user named (`a.npy` or `m.safetensors:tensor`), for messages.
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    data: Data,
}

enum Data {
    Mapped { map: Mmap, offset: usize },
    Owned(Vec<f32>),
}

impl Matrix {
    /// A matrix from values already in memory (tests, other crates).
    pub fn from_vec(
        name: &str,
        rows: usize,
        cols: usize,
        data: Vec<f32>,
    ) -> Result<Matrix, InputError> {
        if data.len() != rows * cols {
            return err(
                name,
                format!("{} values for shape [{rows}, {cols}]", data.len()),
            );
        }
        let m = Matrix {
            name: name.to_string(),
            rows,
            cols,
            data: Data::Owned(data),
        };
        m.validate()?;
        Ok(m)
    }

    pub fn as_slice(&self) -> &[f32] {
        match &self.data {
            Data::Owned(v) => v,
            Data::Mapped { map, offset } => {
                // Alignment and length were checked when the file was opened.
                bytemuck::cast_slice(&map[*offset..*offset + self.rows * self.cols * 4])
            }
        }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.as_slice()[i * self.cols..(i + 1) * self.cols]
    }

    /// Shape and finiteness checks shared by every source.
    fn validate(&self) -> Result<(), InputError> {
        if self.rows == 0 || self.cols == 0 {
            return err(
                &self.name,
                format!("empty array of shape [{}, {}]", self.rows, self.cols),
            );
        }
        if let Some(pos) = self.as_slice().iter().position(|x| !x.is_finite()) {
            let (r, c) = (pos / self.cols, pos % self.cols);
            let what = if self.as_slice()[pos].is_nan() {
                "NaN"
            } else {
                "infinity"
            };
            return err(&self.name, format!("{what} at row {r}, column {c}"));
        }
        Ok(())
    }
}

/// Open `spec`: `path.npy`, or `path.safetensors:tensor_name`.
pub fn load(spec: &str) -> Result<Matrix, InputError> {
    if let Some((path, tensor)) = split_safetensors(spec) {
        return load_safetensors(spec, path, tensor);
    }
    load_npy(spec)
}

fn split_safetensors(spec: &str) -> Option<(&str, &str)> {
    let idx = spec.rfind(".safetensors:")?;
    let path = &spec[..idx + ".safetensors".len()];
    Some((path, &spec[idx + ".safetensors:".len()..]))
}

fn map_file(name: &str, path: &str) -> Result<Mmap, InputError> {
    let file = File::open(path).or_else(|e| err(name, format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .or_else(|e| err(name, format!("cannot stat: {e}")))?;
    if meta.is_dir() {
        return err(name, "is a directory");
    }
    // SAFETY: the map is read-only and private to this process; if another process truncates
    // the file while we read it, reads fault (SIGBUS) rather than returning wrong data. That is
    // the accepted trade-off for not copying inputs of several GiB.
    unsafe { Mmap::map(&file) }.or_else(|e| err(name, format!("cannot map: {e}")))
}

/// Element types we accept, from numpy's `descr` or safetensors' dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dtype {
    F16,
    F32,
    F64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// Build a matrix from `bytes = map[offset..]` holding `rows·cols` elements of `dtype`.
fn from_bytes(
    name: &str,
    map: Mmap,
    offset: usize,
    dtype: Dtype,
    big_endian: bool,
    shape: &[u64],
) -> Result<Matrix, InputError> {
    if shape.len() != 2 {
        return err(
            name,
            format!("expected a 2-D array [N, D], found shape {shape:?}"),
        );
    }
    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
    let count = rows
        .checked_mul(cols)
        .and_then(|c| c.checked_mul(dtype.size()));
    let available = map.len() - offset;
    let Some(needed) = count else {
        return err(name, format!("shape {shape:?} is too large"));
    };
    if needed > available {
        return err(
            name,
            format!("truncated: shape {shape:?} needs {needed} data bytes, file has {available}"),
        );
    }
    let bytes = &map[offset..offset + needed];
    let zero_copy = dtype == Dtype::F32
        && !big_endian
        && cfg!(target_endian = "little")
        && offset.is_multiple_of(4);
    let data = if zero_copy {
        Data::Mapped { map, offset }
    } else {
        let mut out = Vec::with_capacity(rows * cols);
        for chunk in bytes.chunks_exact(dtype.size()) {
            let v = match (dtype, big_endian) {
                (Dtype::F16, false) => half::f16::from_le_bytes([chunk[0], chunk[1]]).to_f32(),
                (Dtype::F16, true) => half::f16::from_be_bytes([chunk[0], chunk[1]]).to_f32(),
                (Dtype::F32, false) => f32::from_le_bytes(chunk.try_into().unwrap()),
                (Dtype::F32, true) => f32::from_be_bytes(chunk.try_into().unwrap()),
                (Dtype::F64, be) => {
                    let x = if be {
                        f64::from_be_bytes(chunk.try_into().unwrap())
                    } else {
                        f64::from_le_bytes(chunk.try_into().unwrap())
                    };
                    // Volumes are computed from float32 values; refuse what float32 cannot hold.
                    if x.is_finite() && x.abs() > f32::MAX as f64 {
                        let pos = out.len();
                        return err(
                            name,
                            format!(
                                "value {x:e} at row {}, column {} exceeds float32 range",
                                pos / cols,
                                pos % cols
                            ),
                        );
                    }
                    x as f32
                }
            };
            out.push(v);
        }
        Data::Owned(out)
    };
    let m = Matrix {
        name: name.to_string(),
        rows,
        cols,
        data,
    };
    m.validate()?;
    Ok(m)
}

fn load_npy(name: &str) -> Result<Matrix, InputError> {
    let map = map_file(name, name)?;
    let mut rest: &[u8] = &map;
    let header = npyz::NpyHeader::from_reader(&mut rest)
        .or_else(|e| err(name, format!("not a valid .npy file: {e}")))?;
    let offset = map.len() - rest.len();
    let npyz::DType::Plain(ts) = header.dtype() else {
        return err(
            name,
            "unsupported dtype: structured or array dtype (need float32, float64 or float16)",
        );
    };
    let descr = ts.to_string();
    let (big_endian, dtype) = match descr.as_str() {
        "<f2" => (false, Dtype::F16),
        ">f2" => (true, Dtype::F16),
        "<f4" => (false, Dtype::F32),
        ">f4" => (true, Dtype::F32),
        "<f8" => (false, Dtype::F64),
        ">f8" => (true, Dtype::F64),
        other => {
            return err(
                name,
                format!("unsupported dtype {other} (need float32, float64 or float16)"),
            );
        }
    };
    if header.order() == npyz::Order::Fortran {
        return err(
            name,
            "Fortran-order array; save it in C order (np.ascontiguousarray)",
        );
    }
    let shape = header.shape().to_vec();
    from_bytes(name, map, offset, dtype, big_endian, &shape)
}

fn load_safetensors(name: &str, path: &str, tensor: &str) -> Result<Matrix, InputError> {
    let map = map_file(name, path)?;
    let (offset, dtype, shape) = {
        let st = safetensors::SafeTensors::deserialize(&map)
            .or_else(|e| err(name, format!("not a valid safetensors file: {e}")))?;
        let view = match st.tensor(tensor) {
            Ok(v) => v,
            Err(_) => {
                let mut names: Vec<String> =
                    st.names().into_iter().map(|s| s.to_string()).collect();
                names.sort();
                return err(
                    name,
                    format!("no tensor named '{tensor}' (tensors: {})", names.join(", ")),
                );
            }
        };
        let dtype = match view.dtype() {
            safetensors::Dtype::F16 => Dtype::F16,
            safetensors::Dtype::F32 => Dtype::F32,
            safetensors::Dtype::F64 => Dtype::F64,
            other => {
                return err(
                    name,
                    format!("unsupported dtype {other:?} (need F32, F64 or F16)"),
                );
            }
        };
        let offset = view.data().as_ptr() as usize - map.as_ptr() as usize;
        let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
        (offset, dtype, shape)
    };
    from_bytes(name, map, offset, dtype, false, &shape)
}
