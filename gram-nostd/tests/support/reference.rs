//! Loader for the reference cases in `testdata/reference` (copied from shared/reference): each
//! case has an anchor [N1, D], modalities [N2, D] (f32) and exact volumes [N1, N2] (f64).
#![allow(dead_code)]

use std::path::PathBuf;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/reference")
}

pub struct Matrix<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<T> Matrix<T> {
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

pub fn load<T: npyz::Deserialize>(name: &str) -> Matrix<T> {
    let path = dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    assert_eq!(shape.len(), 2, "{name}: expected 2-D");
    Matrix {
        rows: shape[0] as usize,
        cols: shape[1] as usize,
        data: npy.into_vec().unwrap(),
    }
}

pub struct Case {
    pub name: String,
    pub anchor: Matrix<f32>,
    pub modalities: Vec<Matrix<f32>>,
    pub exact: Matrix<f64>,
}

/// All volume cases listed in index.json, in a stable order.
pub fn cases() -> Vec<Case> {
    let index: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir().join("index.json")).unwrap()).unwrap();
    let mut names: Vec<(String, usize)> = index
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|(name, m)| Case {
            anchor: load(&format!("{name}_anchor.npy")),
            modalities: (0..m)
                .map(|t| load(&format!("{name}_mod{t}.npy")))
                .collect(),
            exact: load(&format!("{name}_exact.npy")),
            name,
        })
        .collect()
}

impl Case {
    /// The k vectors of pair (i, j): anchor row i, then row j of each modality.
    pub fn tuple(&self, i: usize, j: usize) -> Vec<&[f32]> {
        let mut v = vec![self.anchor.row(i)];
        v.extend(self.modalities.iter().map(|m| m.row(j)));
        v
    }

    /// Relative error tolerance of the foundation's accuracy contract for this case.
    pub fn tolerance(&self) -> f64 {
        if self.name == "near_collinear_0.0001" || self.name == "near_collinear_1e-05" {
            1e-3
        } else {
            1e-5
        }
    }
}

/// Error of `got` against `exact`: relative where exact ≠ 0, absolute where exact = 0.
pub fn error(got: f64, exact: f64) -> f64 {
    if exact == 0.0 {
        got.abs()
    } else {
        (got - exact).abs() / exact.abs()
    }
}
