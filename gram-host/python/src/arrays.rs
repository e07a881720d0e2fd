//! How Python objects become the matrices gram reads, by one documented rule:
//!
//! 1. An object that is not a numpy array goes through `numpy.asarray` once (lists, PyTorch
//!    CPU tensors, anything with `__array__`).
//! 2. Its dtype must be floating (float16, float32, float64): anything else is a `TypeError`.
//!    It must be 2-D: anything else is a `ValueError`.
//! 3. Matrices (`volume_matrix`, `search`, `evaluate`, `loss`) are scored in float32, like the
//!    CLI's files: a C-contiguous, aligned float32 array is read in place (no copy); any other
//!    array is converted once by `numpy.require(x, numpy.float32, "CA")`.
//!    One tuple (`volume`, `log_volume`) is read in place when it is C-contiguous float32 or
//!    float64 (gram-nostd takes both); anything else is converted once to float64.
//! 4. Every value must be finite; the first NaN or infinity is named by row and column.

use gram_host::input::View;
use numpy::{
    Element, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::ops::Range;

pub fn to_value_error(name: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{name}: {e}"))
}

/// Steps 1 and 2: a 2-D floating-point numpy array; the flag says whether it already is a
/// C-contiguous array of `T`.
fn floating_2d<'py, T: Element>(
    py: Python<'py>,
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyUntypedArray>, bool)> {
    let np = py.import("numpy")?;
    let arr = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => np
            .call_method1("asarray", (obj,))
            .and_then(|a| Ok(a.cast_into::<PyUntypedArray>()?))
            .map_err(|e| {
                PyTypeError::new_err(format!("{name}: cannot be read as a numpy array ({e})"))
            })?,
    };
    let dtype = arr.dtype();
    if dtype.kind() != b'f' {
        return Err(PyTypeError::new_err(format!(
            "{name}: unsupported dtype {} (need float32, float64 or float16)",
            dtype.str()?
        )));
    }
    if arr.ndim() != 2 {
        return Err(PyValueError::new_err(format!(
            "{name}: expected a 2-D array [N, D], found shape {:?}",
            arr.shape()
        )));
    }
    let native = dtype.is_equiv_to(&numpy::dtype::<T>(py)) && in_place(&arr)?;
    Ok((arr, native))
}

/// C-contiguous and aligned (an array unpickled from a byte buffer, as Dask sends one, may be
/// contiguous but not aligned): readable in place.
fn in_place(arr: &Bound<'_, PyUntypedArray>) -> PyResult<bool> {
    Ok(arr.is_c_contiguous()
        && arr
            .getattr("flags")?
            .getattr("aligned")?
            .extract::<bool>()?)
}

/// Step 3's conversion (`numpy.require(x, T, "CA")`: C-contiguous and aligned, copied only if
/// it is not), or the array itself when it already is.
fn as_c_array<'py, T: Element>(
    py: Python<'py>,
    arr: Bound<'py, PyUntypedArray>,
    native: bool,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    let arr = if native {
        arr.into_any()
    } else {
        let np = py.import("numpy")?;
        np.call_method1("require", (arr, numpy::dtype::<T>(py), "CA"))?
    };
    Ok(arr.cast_into::<PyArray2<T>>()?.readonly())
}

/// A float32 matrix argument, borrowed from numpy or converted once.
pub struct Input<'py> {
    name: String,
    array: PyReadonlyArray2<'py, f32>,
}

impl<'py> Input<'py> {
    pub fn new(py: Python<'py>, name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Input<'py>> {
        let (arr, native) = floating_2d::<f32>(py, name, obj)?;
        Ok(Input {
            name: name.to_string(),
            array: as_c_array(py, arr, native)?,
        })
    }

    /// The checked view (step 4): the CLI's shape and finiteness checks and messages.
    pub fn view(&self) -> PyResult<View<'_>> {
        let [rows, cols] = [self.array.shape()[0], self.array.shape()[1]];
        let data = self
            .array
            .as_slice()
            .map_err(|e| to_value_error(&self.name, e))?;
        let view = View {
            name: &self.name,
            rows,
            cols,
            data,
        };
        view.validate()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(view)
    }
}

/// A [k, D] tuple of vectors in its own precision.
pub struct Tuple<'py, T: Element> {
    name: String,
    array: PyReadonlyArray2<'py, T>,
}

impl<T: Element> Tuple<'_, T> {
    /// The row ranges into the flat data (gram-nostd checks emptiness and finiteness).
    pub fn rows(&self) -> PyResult<(Vec<Range<usize>>, &[T])> {
        let [k, d] = [self.array.shape()[0], self.array.shape()[1]];
        let data = self
            .array
            .as_slice()
            .map_err(|e| to_value_error(&self.name, e))?;
        Ok(((0..k).map(|i| i * d..(i + 1) * d).collect(), data))
    }
}

/// One tuple argument: float32 or float64 in place, anything else as float64.
pub enum Input64<'py> {
    F32(Tuple<'py, f32>),
    F64(Tuple<'py, f64>),
}

impl<'py> Input64<'py> {
    pub fn new(py: Python<'py>, name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Input64<'py>> {
        let (arr, native32) = floating_2d::<f32>(py, name, obj)?;
        let name = name.to_string();
        if native32 {
            return Ok(Input64::F32(Tuple {
                name,
                array: as_c_array(py, arr, true)?,
            }));
        }
        let native64 = arr.dtype().is_equiv_to(&numpy::dtype::<f64>(py)) && in_place(&arr)?;
        Ok(Input64::F64(Tuple {
            name,
            array: as_c_array(py, arr, native64)?,
        }))
    }
}
