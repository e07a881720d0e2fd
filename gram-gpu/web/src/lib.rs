//! The browser page's wasm module (wasm-bindgen): makes or reads matrices, scores them with
//! gram-gpu on WebGPU and with gram-nostd on the CPU (the same module, wasm32), and compares.
//! Everything the page shows comes from [`run`]'s [`RunResult`].

use gram_gpu::{GpuContext, GpuScorer};
use wasm_bindgen::prelude::*;

/// A row-major float32 matrix.
#[wasm_bindgen]
#[derive(Clone, Debug)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

#[wasm_bindgen]
impl Matrix {
    #[wasm_bindgen(getter)]
    pub fn rows(&self) -> usize {
        self.rows
    }
    #[wasm_bindgen(getter)]
    pub fn cols(&self) -> usize {
        self.cols
    }
}

fn unit_rows(mut data: Vec<f32>, cols: usize) -> Vec<f32> {
    for row in data.chunks_exact_mut(cols) {
        let n = row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
        }
    }
    data
}

/// `rows` unit vectors of dimension `cols` with uniform random coordinates in [−½, ½)
/// (gram-nostd's seeded generator: the same seed gives the same matrix everywhere).
#[wasm_bindgen]
pub fn random_unit_rows(rows: usize, cols: usize, seed: u32) -> Matrix {
    let data = gram_nostd::uniform::Uniform::new(seed as u64)
        .take(rows * cols)
        .map(|x| x as f32 - 0.5)
        .collect();
    Matrix {
        rows,
        cols,
        data: unit_rows(data, cols),
    }
}

/// `rows` unit rows, row i = unit(base[i mod base.rows] + noise·r_i) with random unit r_i:
/// modalities and anchors aligned with `base`, so the top-k has true matches to find.
#[wasm_bindgen]
pub fn noisy_rows(base: &Matrix, rows: usize, noise: f32, seed: u32) -> Matrix {
    let r = random_unit_rows(rows, base.cols, seed);
    let d = base.cols;
    let data = (0..rows * d)
        .map(|e| base.data[(e / d % base.rows) * d + e % d] + noise * r.data[e])
        .collect();
    Matrix {
        rows,
        cols: d,
        data: unit_rows(data, d),
    }
}

/// A dropped .npy file: little-endian float32 or float64, C order, 2-D, every value finite.
#[wasm_bindgen]
pub fn parse_npy(name: &str, bytes: &[u8]) -> Result<Matrix, JsError> {
    let fail = |p: String| JsError::new(&format!("{name}: {p}"));
    let npy = npyz::NpyFile::new(bytes).map_err(|e| fail(format!("not a valid .npy file: {e}")))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(fail("Fortran-order array; save it in C order".into()));
    }
    let shape = npy.shape().to_vec();
    let [rows, cols] = shape[..] else {
        return Err(fail(format!(
            "expected a 2-D array [N, D], found shape {shape:?}"
        )));
    };
    let (rows, cols) = (rows as usize, cols as usize);
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(fail("structured dtype (need float32 or float64)".into()));
    };
    let descr = ts.to_string();
    let data: Vec<f32> = match descr.as_str() {
        "<f4" => npy.into_vec::<f32>().map_err(|e| fail(e.to_string()))?,
        "<f8" => npy
            .into_vec::<f64>()
            .map_err(|e| fail(e.to_string()))?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        _ => {
            return Err(fail(format!(
                "unsupported dtype {descr} (need little-endian float32 or float64)"
            )));
        }
    };
    if rows == 0 || cols == 0 || data.len() != rows * cols {
        return Err(fail(format!("empty or truncated array of shape {shape:?}")));
    }
    if let Some(p) = data.iter().position(|x| !x.is_finite()) {
        return Err(fail(format!(
            "NaN or infinity at row {}, column {}",
            p / cols,
            p % cols
        )));
    }
    Ok(Matrix { rows, cols, data })
}

/// An anchor [N1, D] and 1..=15 modalities [N2, D].
#[wasm_bindgen]
pub struct Problem {
    anchor: Matrix,
    modalities: Vec<Matrix>,
}

#[wasm_bindgen]
impl Problem {
    #[wasm_bindgen(constructor)]
    pub fn new(anchor: &Matrix) -> Problem {
        Problem {
            anchor: anchor.clone(),
            modalities: vec![],
        }
    }

    /// Add a modality; its dimension and rows must fit the others.
    pub fn add(&mut self, m: &Matrix) -> Result<(), JsError> {
        if m.cols != self.anchor.cols {
            return Err(JsError::new(&format!(
                "modality {}: dimension {} does not match the anchor's {}",
                self.modalities.len(),
                m.cols,
                self.anchor.cols
            )));
        }
        if let Some(first) = self.modalities.first()
            && first.rows != m.rows
        {
            return Err(JsError::new(&format!(
                "modality {}: {} rows, but modality 0 has {}",
                self.modalities.len(),
                m.rows,
                first.rows
            )));
        }
        if self.modalities.len() + 2 > gram_nostd::MAX_K {
            return Err(JsError::new("at most 15 modalities"));
        }
        self.modalities.push(m.clone());
        Ok(())
    }
}

/// What one run measured (times in milliseconds).
#[wasm_bindgen(getter_with_clone)]
pub struct RunResult {
    pub adapter: String,
    pub n1: usize,
    pub n2: usize,
    pub dim: usize,
    pub k: usize,
    pub top_k: usize,
    pub setup_ms: f64,
    pub gpu_matrix_ms: f64,
    pub gpu_topk_ms: f64,
    pub cpu_ms: f64,
    /// max |gpu − cpu| / cpu over pairs whose exact volume is ≥ 1e-3 (the rest: abs error).
    pub max_rel_err: f64,
    pub max_abs_err: f64,
    /// max relative error of the GPU top-k volumes against the CPU's k smallest per row.
    pub topk_max_rel_err: f64,
    /// Rows whose GPU top-k indices equal the CPU's (ties may reorder a few).
    pub topk_rows_equal: usize,
    /// First rows of the GPU top-k: "row: j (vol), …" lines.
    pub preview: String,
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Score `problem` on WebGPU (volume matrix and top-`top_k`) and on the CPU with gram-nostd's
/// exact volume, and compare.
#[wasm_bindgen]
pub async fn run(problem: Problem, top_k: usize) -> Result<RunResult, JsError> {
    let (a, ms) = (&problem.anchor, &problem.modalities);
    if ms.is_empty() {
        return Err(JsError::new("add at least one modality"));
    }
    let (n1, n2, dim) = (a.rows, ms[0].rows, a.cols);
    let top_k = top_k.clamp(1, n2.min(gram_gpu::MAX_TOP_K));
    let js = |e: gram_gpu::GpuError| JsError::new(&e.to_string());
    let t = now_ms();
    let ctx = GpuContext::new_async().await.map_err(js)?;
    let views: Vec<&[f32]> = ms.iter().map(|m| m.data.as_slice()).collect();
    let scorer = GpuScorer::new(&ctx, &views, n2, dim).map_err(js)?;
    let setup_ms = now_ms() - t;
    let t = now_ms();
    let v = scorer.volume_matrix_async(&a.data).await.map_err(js)?;
    let gpu_matrix_ms = now_ms() - t;
    let t = now_ms();
    let hits = scorer.top_k_async(&a.data, top_k).await.map_err(js)?;
    let gpu_topk_ms = now_ms() - t;
    let t = now_ms();
    let exact = cpu_volume_matrix(&a.data, &views, dim)?;
    let cpu_ms = now_ms() - t;
    let (mut rel, mut abs) = (0f64, 0f64);
    for (g, c) in v.iter().zip(&exact) {
        let d = (*g as f64 - c).abs();
        if *c >= 1e-3 {
            rel = rel.max(d / c);
        } else {
            abs = abs.max(d);
        }
    }
    let (mut topk_rel, mut rows_equal) = (0f64, 0usize);
    for (i, hit) in hits.iter().enumerate() {
        let row = &exact[i * n2..(i + 1) * n2];
        let mut order: Vec<usize> = (0..n2).collect();
        order.sort_by(|&x, &y| row[x].total_cmp(&row[y]).then(x.cmp(&y)));
        for (h, &j) in hit.iter().zip(&order) {
            let c = row[j].max(1e-3);
            topk_rel = topk_rel.max((h.1 as f64 - row[j]).abs() / c);
        }
        rows_equal += (hit.len() == top_k
            && hit.iter().zip(&order).all(|(h, &j)| h.0 as usize == j))
            as usize;
    }
    let preview = hits
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, hit)| {
            let items: Vec<String> = hit
                .iter()
                .take(5)
                .map(|(j, v)| format!("{j} ({v:.4})"))
                .collect();
            format!("{i}: {}", items.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(RunResult {
        adapter: ctx.describe(),
        n1,
        n2,
        dim,
        k: ms.len() + 1,
        top_k,
        setup_ms,
        gpu_matrix_ms,
        gpu_topk_ms,
        cpu_ms,
        max_rel_err: rel,
        max_abs_err: abs,
        topk_max_rel_err: topk_rel,
        topk_rows_equal: rows_equal,
        preview,
    })
}

/// The exact volume of every pair with gram-nostd (f64, the reference every backend meets).
fn cpu_volume_matrix(
    anchor: &[f32],
    modalities: &[&[f32]],
    dim: usize,
) -> Result<Vec<f64>, JsError> {
    let n2 = modalities[0].len() / dim;
    let mut out = Vec::with_capacity(anchor.len() / dim * n2);
    for a in anchor.chunks_exact(dim) {
        for j in 0..n2 {
            let mut rows = vec![a];
            rows.extend(modalities.iter().map(|m| &m[j * dim..(j + 1) * dim]));
            out.push(gram_nostd::volume(&rows).map_err(|e| JsError::new(&e.to_string()))?);
        }
    }
    Ok(out)
}
