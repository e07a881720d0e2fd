//! `gram._gram`: the Python bindings (PyO3 + rust-numpy). Each function takes numpy arrays,
//! runs the same code as the `gram` CLI ([`gram_host::commands::Batch`]) with the GIL
//! released, and returns numpy arrays. Bad input raises `ValueError` (or `TypeError` for a
//! wrong dtype) whose text is the CLI's `error:` line with the argument's name in place of
//! the file's and keyword arguments in place of flags (`k=0: …`, not `--top-k 0: …`); a file
//! that cannot be read raises `OSError`, a GPU failure `RuntimeError`. The Python-facing docs live in `python/gram/__init__.py` and `_gram.pyi`.

mod arrays;

use arrays::{Input, Input64, to_value_error};
use gram_host::commands::{Backend, Batch};
use gram_host::error::{Arg, Error};
use gram_host::pair_gram::{self, PairDims};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn backend(name: &str) -> PyResult<Backend> {
    match name {
        "cpu" => Ok(Backend::Cpu),
        "gpu" => Ok(Backend::Gpu),
        other => Err(PyValueError::new_err(format!(
            "backend '{other}': must be 'cpu' or 'gpu'"
        ))),
    }
}

/// The Python keyword argument that carries `arg` (the CLI says `--top-k`, Python `k`).
fn keyword(arg: Arg) -> &'static str {
    match arg {
        Arg::TopK => "k",
        Arg::Temperature => "temperature",
        Arg::LabelSmoothing => "label_smoothing",
        Arg::Modality => "modalities",
        other => other.flag(),
    }
}

/// gram-host's error as the fitting Python exception, worded in Python's terms: a bad argument
/// or input is a `ValueError` naming the keyword (`k=0: …`), a file that cannot be read or
/// written an `OSError`, a GPU failure a `RuntimeError`.
fn cli_error(e: Error) -> PyErr {
    use pyo3::exceptions::{PyOSError, PyRuntimeError};
    match e {
        Error::Argument {
            arg,
            value,
            message,
        } => {
            let name = keyword(arg);
            PyValueError::new_err(match value {
                None if message.is_empty() => format!("no {name} given"),
                None => format!("no {name} given: {message}"),
                Some(v) if v.is_empty() => format!("{name}: {message}"),
                Some(v) => format!("{name}={v}: {message}"),
            })
        }
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        Error::Gpu(message) => PyRuntimeError::new_err(format!("backend='gpu': {message}")),
        Error::Data { .. } | Error::Usage(_) => PyValueError::new_err(e.to_string()),
    }
}

/// The anchor and modalities as checked views (the CLI's checks and messages), then `f`
/// without the GIL.
fn with_batch<T: Send>(
    py: Python<'_>,
    anchor: &Bound<'_, PyAny>,
    modalities: &Bound<'_, PyAny>,
    f: impl FnOnce(&Batch) -> Result<T, Error> + Send,
) -> PyResult<T> {
    let anchor = Input::new(py, "anchor", anchor)?;
    let mods = modalities
        .try_iter()
        .map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(
                "modalities: must be a list of arrays (one [N2, D] array per modality)",
            )
        })?
        .enumerate()
        .map(|(t, m)| Input::new(py, &format!("modalities[{t}]"), &m?))
        .collect::<PyResult<Vec<_>>>()?;
    let anchor_view = anchor.view()?;
    let views = mods.iter().map(Input::view).collect::<PyResult<Vec<_>>>()?;
    py.detach(|| {
        let batch = Batch::new(anchor_view, views)?;
        f(&batch)
    })
    .map_err(cli_error)
}

/// See `gram.volume_matrix`.
#[pyfunction]
#[pyo3(signature = (anchor, modalities, backend = "cpu"))]
fn volume_matrix<'py>(
    py: Python<'py>,
    anchor: &Bound<'py, PyAny>,
    modalities: &Bound<'py, PyAny>,
    backend: &str,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let backend = self::backend(backend)?;
    let (v, n1, n2) = with_batch(py, anchor, modalities, |b| {
        let (v, _) = b.volume_matrix(backend)?;
        Ok((v, b.anchor.rows, b.candidates()))
    })?;
    let v = Array2::from_shape_vec((n1, n2), v).expect("volume_matrix returns N1·N2 values");
    Ok(v.into_pyarray(py))
}

/// Hits as numpy arrays: indices uint32 [N1, k] and volumes float32 [N1, k].
#[allow(clippy::type_complexity)]
fn hit_arrays<'py>(
    py: Python<'py>,
    rows: Vec<Vec<(u32, f32)>>,
    k: usize,
) -> (Bound<'py, PyArray2<u32>>, Bound<'py, PyArray2<f32>>) {
    let shape = (rows.len(), k);
    let (idx, vol): (Vec<u32>, Vec<f32>) = rows.into_iter().flatten().unzip();
    (
        Array2::from_shape_vec(shape, idx)
            .expect("k indices per anchor")
            .into_pyarray(py),
        Array2::from_shape_vec(shape, vol)
            .expect("k volumes per anchor")
            .into_pyarray(py),
    )
}

/// See `gram.search`.
#[pyfunction]
#[pyo3(signature = (anchor, modalities, k, backend = "cpu"))]
#[allow(clippy::type_complexity)]
fn search<'py>(
    py: Python<'py>,
    anchor: &Bound<'py, PyAny>,
    modalities: &Bound<'py, PyAny>,
    k: usize,
    backend: &str,
) -> PyResult<(Bound<'py, PyArray2<u32>>, Bound<'py, PyArray2<f32>>)> {
    let backend = self::backend(backend)?;
    let rows = with_batch(py, anchor, modalities, |b| b.top_k(k, backend))?;
    Ok(hit_arrays(py, rows, k))
}

/// See `gram.search_index`.
#[pyfunction]
#[pyo3(signature = (anchor, index, k, backend = "cpu"))]
#[allow(clippy::type_complexity)]
fn search_index<'py>(
    py: Python<'py>,
    anchor: &Bound<'py, PyAny>,
    index: &Bound<'py, PyAny>,
    k: usize,
    backend: &str,
) -> PyResult<(Bound<'py, PyArray2<u32>>, Bound<'py, PyArray2<f32>>)> {
    let backend = self::backend(backend)?;
    let dirs = index_dirs(index)?;
    let anchor = Input::new(py, "anchor", anchor)?;
    let view = anchor.view()?;
    let keys = py
        .detach(|| {
            let idx = gram_host::index::Index::open(&dirs)?;
            gram_host::index::search_keys(&idx, view, k, backend).map(|(keys, _)| keys)
        })
        .map_err(cli_error)?;
    let rows = keys
        .into_iter()
        .map(|r| r.into_iter().map(gram_host::cpu::topk::unkey).collect())
        .collect();
    Ok(hit_arrays(py, rows, k))
}

/// An index argument: one directory or a list of them.
fn index_dirs(index: &Bound<'_, PyAny>) -> PyResult<Vec<std::path::PathBuf>> {
    match index.extract::<std::path::PathBuf>() {
        Ok(one) => Ok(vec![one]),
        Err(_) => index.extract().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(
                "index: must be a path or a list of paths (index directories)",
            )
        }),
    }
}

type ApproxArrays<'py> = (
    Bound<'py, PyArray2<u32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<bool>>,
);

/// Hits and their certificate as arrays: bound.npy's volumes (sqrt of the bound on vol²).
fn approx_arrays<'py>(
    py: Python<'py>,
    keys: Vec<Vec<u64>>,
    bound_sq: &[f64],
    k: usize,
) -> ApproxArrays<'py> {
    let certified: Vec<bool> = keys
        .iter()
        .zip(bound_sq)
        .map(|(r, &b)| gram_host::index::ann::certified(r, k, b))
        .collect();
    let bound: Vec<f64> = bound_sq.iter().map(|b| b.sqrt()).collect();
    let rows = keys
        .into_iter()
        .map(|r| r.into_iter().map(gram_host::cpu::topk::unkey).collect())
        .collect();
    let (idx, vol) = hit_arrays(py, rows, k);
    (idx, vol, bound.into_pyarray(py), certified.into_pyarray(py))
}

/// See `gram.search_index_approx`.
#[pyfunction]
#[pyo3(signature = (anchor, index, k, probe = None, low_w = None, rerank = None))]
fn search_index_approx<'py>(
    py: Python<'py>,
    anchor: &Bound<'py, PyAny>,
    index: &Bound<'py, PyAny>,
    k: usize,
    probe: Option<usize>,
    low_w: Option<usize>,
    rerank: Option<usize>,
) -> PyResult<ApproxArrays<'py>> {
    let d = gram_host::index::ann::ApproxOptions::default();
    let opts = gram_host::index::ann::ApproxOptions {
        probe: probe.unwrap_or(d.probe),
        low_w: low_w.unwrap_or(d.low_w),
        rerank: rerank.unwrap_or(d.rerank),
    };
    let dirs = index_dirs(index)?;
    let anchor = Input::new(py, "anchor", anchor)?;
    let view = anchor.view()?;
    let hits = py
        .detach(|| {
            let idx = gram_host::index::Index::open(&dirs)?;
            let anns = gram_host::index::ann::open(&idx)?;
            gram_host::index::ann::search(&idx, &anns, view, k, opts).map(|(h, _)| h)
        })
        .map_err(cli_error)?;
    Ok(approx_arrays(py, hits.keys, &hits.bound_sq, k))
}

/// See `gram.merge_hits`: the k best of hit arrays of disjoint candidates, by `gram merge`'s
/// rule; `bounds` (one per part, None for an exact part) combine by their minimum.
#[pyfunction]
#[pyo3(signature = (indices, volumes, k, bounds))]
fn merge_hits<'py>(
    py: Python<'py>,
    indices: Vec<PyReadonlyArray2<'py, u32>>,
    volumes: Vec<PyReadonlyArray2<'py, f32>>,
    k: usize,
    bounds: Vec<Option<PyReadonlyArray1<'py, f64>>>,
) -> PyResult<ApproxArrays<'py>> {
    let n = indices.first().map_or(0, |a| a.shape()[0]);
    if indices.is_empty() || indices.len() != volumes.len() || indices.len() != bounds.len() {
        return Err(PyValueError::new_err(
            "merge_hits: one indices, volumes and bound per part, at least one part",
        ));
    }
    let mut available = 0;
    for (p, (i, v)) in indices.iter().zip(&volumes).enumerate() {
        if i.shape() != v.shape() || i.shape()[0] != n {
            return Err(PyValueError::new_err(format!(
                "part {p}: indices {:?} and volumes {:?} must have the same shape, with {n} rows like part 0",
                i.shape(),
                v.shape()
            )));
        }
        available += i.shape()[1];
    }
    if k == 0 || k > available {
        return Err(PyValueError::new_err(format!(
            "k = {k}: must be between 1 and the hits per row ({available})"
        )));
    }
    let mut bound_sq = vec![f64::INFINITY; n];
    for (p, b) in bounds.iter().enumerate() {
        if let Some(b) = b {
            let b = b.as_slice()?;
            if b.len() != n || b.iter().any(|x| x.is_nan() || *x < 0.0) {
                return Err(PyValueError::new_err(format!(
                    "part {p}: bound must be {n} non-negative values"
                )));
            }
            for (o, x) in bound_sq.iter_mut().zip(b) {
                *o = o.min(x * x);
            }
        }
    }
    let keys: Vec<Vec<u64>> = (0..n)
        .map(|r| {
            let rows = indices.iter().zip(&volumes).map(|(i, v)| {
                let (i, v) = (i.as_array(), v.as_array());
                (0..i.shape()[1])
                    .map(move |c| gram_host::cpu::topk::key(i[[r, c]], v[[r, c]]))
                    .collect::<Vec<u64>>()
            });
            gram_host::cpu::topk::merge(rows, k)
        })
        .collect();
    Ok(approx_arrays(py, keys, &bound_sq, k))
}

fn summary<'py>(py: Python<'py>, s: &gram_nostd::RankSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("r1", s.r1)?;
    d.set_item("r5", s.r5)?;
    d.set_item("r10", s.r10)?;
    d.set_item("medr", s.medr)?;
    d.set_item("meanr", s.meanr)?;
    Ok(d)
}

/// See `gram.evaluate`.
#[pyfunction]
#[pyo3(signature = (anchor, modalities, ties = "pessimistic"))]
fn evaluate<'py>(
    py: Python<'py>,
    anchor: &Bound<'py, PyAny>,
    modalities: &Bound<'py, PyAny>,
    ties: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let ties = match ties {
        "pessimistic" => gram_nostd::Ties::Pessimistic,
        "optimistic" => gram_nostd::Ties::Optimistic,
        "stable" => gram_nostd::Ties::Stable,
        other => {
            return Err(PyValueError::new_err(format!(
                "ties '{other}': must be 'pessimistic', 'optimistic' or 'stable'"
            )));
        }
    };
    let r = with_batch(py, anchor, modalities, |b| b.evaluate(ties))?;
    let d = PyDict::new(py);
    d.set_item("anchor_to_data", summary(py, &r.anchor_to_data)?)?;
    d.set_item("data_to_anchor", summary(py, &r.data_to_anchor)?)?;
    Ok(d)
}

/// See `gram.loss`.
#[pyfunction]
#[pyo3(signature = (anchor, modalities, temperature = 0.07, label_smoothing = 0.1))]
fn loss<'py>(
    py: Python<'py>,
    anchor: &Bound<'py, PyAny>,
    modalities: &Bound<'py, PyAny>,
    temperature: f64,
    label_smoothing: f64,
) -> PyResult<Bound<'py, PyDict>> {
    gram_host::commands::check_loss_parameters(temperature, label_smoothing).map_err(cli_error)?;
    let (parts, grad, b) = with_batch(py, anchor, modalities, |batch| {
        let b = batch.anchor.rows;
        let mut grad = vec![0.0f64; b * b];
        let parts = batch.loss(temperature, label_smoothing, Some(&mut grad))?;
        Ok((parts, grad, b))
    })?;
    let d = PyDict::new(py);
    d.set_item("loss", parts.loss)?;
    d.set_item("anchor_to_data", parts.anchor_to_data)?;
    d.set_item("data_to_anchor", parts.data_to_anchor)?;
    let grad = Array2::from_shape_vec((b, b), grad).expect("B² gradient entries");
    d.set_item("grad", grad.into_pyarray(py))?;
    Ok(d)
}

/// One tuple's volume or log-volume: f32 and f64 rows are read in place (gram-nostd is
/// generic over both), anything else converted to f64 once.
fn tuple_value(
    py: Python<'_>,
    vectors: &Bound<'_, PyAny>,
    f32_fn: fn(&[&[f32]]) -> Result<f64, gram_nostd::GramError>,
    f64_fn: fn(&[&[f64]]) -> Result<f64, gram_nostd::GramError>,
) -> PyResult<f64> {
    let v = Input64::new(py, "vectors", vectors)?;
    let r = match &v {
        Input64::F32(a) => {
            let (rows, data) = a.rows()?;
            py.detach(|| f32_fn(&rows.iter().map(|r| &data[r.clone()]).collect::<Vec<_>>()))
        }
        Input64::F64(a) => {
            let (rows, data) = a.rows()?;
            py.detach(|| f64_fn(&rows.iter().map(|r| &data[r.clone()]).collect::<Vec<_>>()))
        }
    };
    r.map_err(|e| to_value_error("vectors", e))
}

/// See `gram.volume`.
#[pyfunction]
fn volume(py: Python<'_>, vectors: &Bound<'_, PyAny>) -> PyResult<f64> {
    tuple_value(py, vectors, gram_nostd::volume, gram_nostd::volume)
}

/// See `gram.log_volume`.
#[pyfunction]
fn log_volume(py: Python<'_>, vectors: &Bound<'_, PyAny>) -> PyResult<f64> {
    tuple_value(py, vectors, gram_nostd::log_volume, gram_nostd::log_volume)
}

/// (B1, B2, m) of the pair-Gram inputs, from their numpy shapes.
fn pair_dims(
    cross: &PyReadonlyArrayDyn<f64>,
    inner: &PyReadonlyArrayDyn<f64>,
    norms: &PyReadonlyArrayDyn<f64>,
) -> PyResult<PairDims> {
    let (c, i, n) = (cross.shape(), inner.shape(), norms.shape());
    match (c, i, n) {
        ([b1, b2, m], [b2_, m1, m2], [b1_]) if b1 == b1_ && b2 == b2_ && m == m1 && m == m2 => {
            Ok(PairDims {
                b1: *b1,
                b2: *b2,
                m: *m,
            })
        }
        _ => Err(PyValueError::new_err(format!(
            "pair volumes: shapes cross {c:?}, inner {i:?}, norms {n:?} do not fit ([B1, B2, m], [B2, m, m], [B1])"
        ))),
    }
}

fn slice<'a>(a: &'a PyReadonlyArrayDyn<f64>, name: &str) -> PyResult<&'a [f64]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name}: must be C-contiguous float64")))
}

/// The k×k part of the PyTorch function's forward (gram_host::pair_gram): float64 inputs.
#[pyfunction]
fn _pair_volumes<'py>(
    py: Python<'py>,
    cross: PyReadonlyArrayDyn<'py, f64>,
    inner: PyReadonlyArrayDyn<'py, f64>,
    norms: PyReadonlyArrayDyn<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let d = pair_dims(&cross, &inner, &norms)?;
    let (c, i, n) = (
        slice(&cross, "cross")?,
        slice(&inner, "inner")?,
        slice(&norms, "norms")?,
    );
    let v = py
        .detach(|| pair_gram::pair_volumes(c, i, n, d))
        .map_err(|e| to_value_error("volume_matrix", e))?;
    Ok(Array2::from_shape_vec((d.b1, d.b2), v)
        .expect("B1·B2 volumes")
        .into_pyarray(py))
}

/// Its backward: gradients with respect to cross, inner and norms for upstream `up` [B1, B2].
#[pyfunction]
#[allow(clippy::type_complexity)]
fn _pair_volume_grads<'py>(
    py: Python<'py>,
    cross: PyReadonlyArrayDyn<'py, f64>,
    inner: PyReadonlyArrayDyn<'py, f64>,
    norms: PyReadonlyArrayDyn<'py, f64>,
    up: PyReadonlyArrayDyn<'py, f64>,
) -> PyResult<(
    Bound<'py, PyArrayDyn<f64>>,
    Bound<'py, PyArrayDyn<f64>>,
    Bound<'py, PyArray1<f64>>,
)> {
    let d = pair_dims(&cross, &inner, &norms)?;
    if up.shape() != [d.b1, d.b2] {
        return Err(PyValueError::new_err(format!(
            "pair volumes: upstream gradient of shape {:?}, expected [{}, {}]",
            up.shape(),
            d.b1,
            d.b2
        )));
    }
    let (c, i, n, u) = (
        slice(&cross, "cross")?,
        slice(&inner, "inner")?,
        slice(&norms, "norms")?,
        slice(&up, "grad")?,
    );
    let g = py
        .detach(|| pair_gram::pair_volume_grads(c, i, n, u, d))
        .map_err(|e| to_value_error("volume_matrix", e))?;
    let shaped = |v: Vec<f64>, shape: &[usize]| {
        numpy::ndarray::ArrayD::from_shape_vec(shape, v)
            .expect("gradient has its input's shape")
            .into_pyarray(py)
    };
    Ok((
        shaped(g.cross, &[d.b1, d.b2, d.m]),
        shaped(g.inner, &[d.b2, d.m, d.m]),
        g.norms.into_pyarray(py),
    ))
}

#[pymodule]
fn _gram(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(volume, m)?)?;
    m.add_function(wrap_pyfunction!(log_volume, m)?)?;
    m.add_function(wrap_pyfunction!(volume_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(search, m)?)?;
    m.add_function(wrap_pyfunction!(search_index, m)?)?;
    m.add_function(wrap_pyfunction!(search_index_approx, m)?)?;
    m.add_function(wrap_pyfunction!(merge_hits, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(loss, m)?)?;
    m.add_function(wrap_pyfunction!(_pair_volumes, m)?)?;
    m.add_function(wrap_pyfunction!(_pair_volume_grads, m)?)?;
    m.add("MAX_K", gram_nostd::MAX_K)?;
    m.add("HAS_GPU", cfg!(feature = "gpu"))?;
    Ok(())
}
