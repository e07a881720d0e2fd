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
    /// Set when the file could not be opened or read at all (not a problem with its contents).
    pub io: Option<std::io::ErrorKind>,
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
        io: None,
    })
}

/// [`err`] for a file that could not be opened, inspected, mapped or read.
fn io_err<T>(file: &str, what: &str, e: std::io::Error) -> Result<T, InputError> {
    Err(InputError {
        file: file.to_string(),
        problem: format!("{what}: {e}"),
        io: Some(e.kind()),
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
    Mapped { map: Backing, offset: usize },
    Owned(Vec<f32>),
}

/// The bytes of a file: memory-mapped, or already in memory (tests, fuzzing, pipes).
enum Backing {
    Map(Mmap),
    Bytes(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Bytes(b) => b,
        }
    }
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

    /// The values as a borrowed [`View`].
    pub fn view(&self) -> View<'_> {
        View {
            name: &self.name,
            rows: self.rows,
            cols: self.cols,
            data: self.as_slice(),
        }
    }

    fn validate(&self) -> Result<(), InputError> {
        self.view().validate()
    }
}

/// A borrowed row-major [rows, cols] f32 matrix and the name messages give it: what every
/// computation takes, whether the values were read from a file ([`Matrix::view`]) or lent
/// by another program (the Python package lends numpy's buffer without a copy).
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub name: &'a str,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [f32],
}

impl View<'_> {
    /// The shape and finiteness checks every source goes through: a non-empty shape that
    /// matches the data, every value finite (the first NaN or infinity is named by row and
    /// column).
    pub fn validate(&self) -> Result<(), InputError> {
        self.check(false).map(|_| ())
    }

    /// [`View::validate`], where `missing_ok` lets a row that is entirely NaN through as a
    /// missing vector; returns which rows are missing.
    pub fn check(&self, missing_ok: bool) -> Result<Vec<bool>, InputError> {
        if self.rows == 0 || self.cols == 0 {
            return err(
                self.name,
                format!("empty array of shape [{}, {}]", self.rows, self.cols),
            );
        }
        if self.rows.checked_mul(self.cols) != Some(self.data.len()) {
            return err(
                self.name,
                format!(
                    "{} values for shape [{}, {}]",
                    self.data.len(),
                    self.rows,
                    self.cols
                ),
            );
        }
        let mut missing = vec![false; if missing_ok { self.rows } else { 0 }];
        // One branch-free pass first, which vectorises (the common case: every value finite);
        // the search for the first bad value, an early-exit loop that does not, only after.
        let all_finite = self
            .data
            .chunks(4096)
            .all(|c| c.iter().fold(true, |ok, x| ok & x.is_finite()));
        if all_finite {
            return Ok(missing);
        }
        let mut pos = 0;
        while let Some(p) = self.data[pos..].iter().position(|x| !x.is_finite()) {
            let pos_bad = pos + p;
            let (r, c) = (pos_bad / self.cols, pos_bad % self.cols);
            let row = &self.data[r * self.cols..(r + 1) * self.cols];
            if missing_ok && row.iter().all(|x| x.is_nan()) {
                missing[r] = true;
                pos = (r + 1) * self.cols;
                continue;
            }
            let x = self.data[pos_bad];
            let what = if x.is_nan() { "NaN" } else { "infinity" };
            let hint = if missing_ok {
                " (a missing vector is a row of NaN only)"
            } else if x.is_nan() && row.iter().all(|x| x.is_nan()) {
                " (a row of NaN marks a missing vector only with --missing)"
            } else {
                ""
            };
            return err(self.name, format!("{what} at row {r}, column {c}{hint}"));
        }
        Ok(missing)
    }
}

/// Open `spec`: `path.npy`, or `path.safetensors:tensor_name`.
pub fn load(spec: &str) -> Result<Matrix, InputError> {
    validated(load_unchecked(spec)?)
}

/// [`load`] for a file where a row of NaN marks a missing vector (`--missing`): returns the
/// matrix and which rows are missing. Any other NaN or infinity is still refused.
pub fn load_allowing_missing(spec: &str) -> Result<(Matrix, Vec<bool>), InputError> {
    let m = load_unchecked(spec)?;
    let missing = m.view().check(true)?;
    Ok((m, missing))
}

fn load_unchecked(spec: &str) -> Result<Matrix, InputError> {
    if let Some((path, tensor)) = split_safetensors(spec) {
        return load_safetensors(spec, path, tensor);
    }
    load_npy(spec)
}

fn validated(m: Matrix) -> Result<Matrix, InputError> {
    m.validate()?;
    Ok(m)
}

fn split_safetensors(spec: &str) -> Option<(&str, &str)> {
    let idx = spec.rfind(".safetensors:")?;
    let path = &spec[..idx + ".safetensors".len()];
    Some((path, &spec[idx + ".safetensors:".len()..]))
}

fn map_file(name: &str, path: &str) -> Result<Backing, InputError> {
    let file = File::open(path).or_else(|e| io_err(name, "cannot open", e))?;
    let meta = file
        .metadata()
        .or_else(|e| io_err(name, "cannot stat", e))?;
    if meta.is_dir() {
        return err(name, "is a directory");
    }
    // SAFETY: the map is read-only and private to this process; if another process truncates
    // the file while we read it, reads fault (SIGBUS) rather than returning wrong data. That is
    // the accepted trade-off for not copying inputs of several GiB.
    unsafe { Mmap::map(&file) }
        .map(Backing::Map)
        .or_else(|e| io_err(name, "cannot map", e))
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
    map: Backing,
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
        // The address, not just the offset: in-memory bytes need not be 4-aligned.
        && (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>());
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
    Ok(Matrix {
        name: name.to_string(),
        rows,
        cols,
        data,
    })
}

fn load_npy(name: &str) -> Result<Matrix, InputError> {
    parse_npy_backing(name, map_file(name, name)?)
}

/// Parse .npy bytes already in memory; `name` is used in messages.
pub fn parse_npy(name: &str, bytes: Vec<u8>) -> Result<Matrix, InputError> {
    validated(parse_npy_backing(name, Backing::Bytes(bytes))?)
}

/// Parse safetensors bytes already in memory and take `tensor`.
pub fn parse_safetensors(name: &str, tensor: &str, bytes: Vec<u8>) -> Result<Matrix, InputError> {
    validated(safetensors_backing(name, tensor, Backing::Bytes(bytes))?)
}

/// Check the fixed .npy preamble before the header parser sees it: npyz allocates the header
/// length the file *claims* (up to 4 GiB in format 2/3) before reading it, so a corrupt
/// length must be caught against the real file size here (found by fuzzing).
fn check_npy_preamble(name: &str, bytes: &[u8]) -> Result<(), InputError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return err(name, "not a valid .npy file: no NUMPY magic");
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return err(name, "not a valid .npy file: truncated preamble"),
        v => {
            return err(
                name,
                format!("not a valid .npy file: unknown format version {v}"),
            );
        }
    };
    if start + len > bytes.len() {
        return err(
            name,
            format!(
                "truncated: header claims {len} bytes, file has {}",
                bytes.len()
            ),
        );
    }
    // npyz's header parser takes exponential time on deeply nested literals (found by
    // fuzzing: 70 '{' in a 200-byte file hang it). A header numpy writes for a plain array is
    // one dict with one shape tuple; anything nested is a dtype we refuse anyway.
    let header = &bytes[start..start + len];
    let count = |c: u8| header.iter().filter(|&&b| b == c).count();
    if count(b'{') != 1 || count(b'}') != 1 || count(b'(') > 1 || count(b')') > 1 || count(b'[') > 0
    {
        return err(
            name,
            "not a valid .npy file: header is not a plain {'descr', 'fortran_order', 'shape'} dict",
        );
    }
    // npyz multiplies the shape's dimensions unchecked (an overflow panic in debug builds,
    // found by CI's fuzz smoke: shape (14031214839052078652, 2)), and its literal parser takes
    // expressions such as `0+14031214839052078652` as a dimension (a second fuzz find). numpy
    // writes each dimension as a plain decimal integer, so that is all we accept, and the
    // product is checked before npyz sees the header.
    let open = header.iter().position(|&b| b == b'(');
    let close = header.iter().position(|&b| b == b')');
    if let (Some(a), Some(b)) = (open, close)
        && a < b
    {
        let dims = String::from_utf8_lossy(&header[a + 1..b]);
        let mut product = Some(1u64);
        for (i, d) in dims.split(',').map(str::trim).enumerate() {
            // `(3,)` is a one-dimensional shape: its last item is empty.
            if d.is_empty() && i > 0 && i == dims.split(',').count() - 1 {
                continue;
            }
            if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
                return err(
                    name,
                    format!("shape ({dims}): dimension '{d}' is not a plain non-negative integer"),
                );
            }
            // All digits: parsing fails only when the dimension itself exceeds u64. A zero
            // dimension counts as 1 here: npyz multiplies the dimensions into strides in
            // either order, so (0, huge, 2) overflows there although it holds no element.
            let d = d.parse::<u64>().ok();
            product = product.zip(d).and_then(|(p, d)| p.checked_mul(d.max(1)));
        }
        if product.is_none() {
            return err(name, format!("shape ({dims}) is too large"));
        }
    }
    Ok(())
}

/// A little-endian uint32 .npy file (search hits' `indices.npy`) as (shape, values), with
/// the same header checks as the float readers.
pub fn load_npy_u32(path: &str) -> Result<(Vec<usize>, Vec<u32>), InputError> {
    let (shape, bytes) = load_npy_plain(path, "<u4", "uint32")?;
    let values = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

/// A little-endian float64 .npy file (an approximate search's `bound.npy`) as (shape, values).
pub fn load_npy_f64(path: &str) -> Result<(Vec<usize>, Vec<f64>), InputError> {
    let (shape, bytes) = load_npy_plain(path, "<f8", "float64")?;
    let values = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    Ok((shape, values))
}

/// The shape and data bytes of a C-order .npy file of dtype `descr` (`what` names it).
fn load_npy_plain(
    path: &str,
    descr_want: &str,
    what: &str,
) -> Result<(Vec<usize>, Vec<u8>), InputError> {
    let bytes = std::fs::read(path).or_else(|e| io_err(path, "cannot read", e))?;
    check_npy_preamble(path, &bytes)?;
    let mut rest: &[u8] = &bytes;
    let header = npyz::NpyHeader::from_reader(&mut rest)
        .or_else(|e| err(path, format!("not a valid .npy file: {e}")))?;
    let descr = match header.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        _ => String::from("structured"),
    };
    if descr != descr_want || header.order() == npyz::Order::Fortran {
        return err(
            path,
            format!("dtype {descr}: need little-endian {what} in C order"),
        );
    }
    let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
    let count: usize = shape.iter().product();
    let size = descr_want[2..].parse::<usize>().expect("descr like <u4");
    if rest.len() != count * size {
        return err(
            path,
            format!("{} data bytes for shape {shape:?}", rest.len()),
        );
    }
    Ok((shape, rest.to_vec()))
}

fn parse_npy_backing(name: &str, map: Backing) -> Result<Matrix, InputError> {
    check_npy_preamble(name, &map)?;
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
    safetensors_backing(name, tensor, map_file(name, path)?)
}

fn safetensors_backing(name: &str, tensor: &str, map: Backing) -> Result<Matrix, InputError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_header_length_is_refused_without_allocating_it() {
        // Fuzzer find: format 3 with a header length of ~662 MB in a 80-byte file.
        let mut bytes = b"\x93NUMPY\x03\x00".to_vec();
        bytes.extend_from_slice(&662_372_470u32.to_le_bytes());
        bytes.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,{2),& }");
        let e = parse_npy("x.npy", bytes).err().unwrap();
        assert!(e.problem.contains("header claims 662372470 bytes"), "{e}");
        let e = parse_npy("x.npy", b"\x93NUMPY\x07\x00\x00\x00".to_vec())
            .err()
            .unwrap();
        assert!(e.problem.contains("unknown format version 7"), "{e}");
        // Fuzzer find: nested braces made the header parser take exponential time.
        let mut bytes = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
        bytes.extend(std::iter::repeat_n(b'{', 70));
        bytes.extend_from_slice(b"'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }");
        bytes.resize(10 + 0x76, b' ');
        bytes.extend_from_slice(&[0u8; 24]);
        let t = std::time::Instant::now();
        let e = parse_npy("x.npy", bytes).err().unwrap();
        assert!(e.problem.contains("not a plain"), "{e}");
        assert!(t.elapsed().as_secs() < 1);
        // Fuzzer find (CI smoke): a shape whose element count overflows u64 made npyz's
        // unchecked product panic in debug builds.
        let crash = include_bytes!("../../fuzz/corpus/readers/regression-shape-overflow");
        let e = parse_npy("x.npy", crash.to_vec()).err().unwrap();
        assert!(e.problem.contains("is too large"), "{e}");
        // Third find (CI smoke, 2026-11-30): shape (0, 14031214839052078652, 2) — no element,
        // but npyz's stride products overflow.
        let crash = include_bytes!("../../fuzz/corpus/readers/regression-shape-zero-dim");
        let e = parse_npy("x.npy", crash.to_vec()).err().unwrap();
        assert!(e.problem.contains("is too large"), "{e}");
        // Second find: npyz evaluates `0+14031214839052078652` as a dimension.
        let crash = include_bytes!("../../fuzz/corpus/readers/regression-shape-plus-expr");
        let e = parse_npy("x.npy", crash.to_vec()).err().unwrap();
        assert!(
            e.problem.contains("not a plain non-negative integer"),
            "{e}"
        );
    }

    #[test]
    fn data_at_any_offset_parses() {
        // Headers padded to 1..4 extra bytes put the data at every offset mod 4: aligned data
        // is used in place, the rest is converted; both read the same values.
        for extra in 0..4 {
            let mut dict =
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }".to_string();
            dict.push_str(&" ".repeat(extra));
            dict.push('\n');
            let mut npy = b"\x93NUMPY\x01\x00".to_vec();
            npy.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            npy.extend_from_slice(dict.as_bytes());
            for v in [1.0f32, 2.0, 3.0, 4.5] {
                npy.extend_from_slice(&v.to_le_bytes());
            }
            let m = parse_npy("x.npy", npy).unwrap();
            assert_eq!(m.as_slice(), &[1.0, 2.0, 3.0, 4.5], "extra {extra}");
        }
    }
}
