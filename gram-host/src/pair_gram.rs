//! The k×k part of a differentiable volume matrix, for autograd frameworks that compute the
//! dot products themselves with their own GEMMs (gram-train's fused Candle op, the Python
//! package's PyTorch function).
//!
//! Inputs, all f64 and row-major: `cross` [B1, B2, m] (anchor_i · modality_t\[j\]), `inner`
//! [B2, m, m] (modality_s\[j\] · modality_t\[j\]) and `norms` \[B1\] (‖anchor_i‖²). Pair (i, j)'s
//! Gram matrix is assembled from them, factored by [`gram_nostd::GramFactor`] (equilibrated,
//! pivoted LDLᵀ in f64: the code every backend is tested against) and
//! vol = sqrt(det G), ∂vol/∂G = ½·vol·G⁻¹ taken from the same factorisation.
//!
//! Accuracy: that of the given dot products times the condition of the equilibrated G (see
//! `GramFactor`); exact arithmetic beyond that. At a G singular to working precision
//! (duplicated or collinear inputs) vol = 0 is the global minimum and the gradient returned
//! is the subgradient 0, where the published sqrt(|det|) gives NaN.

use gram_nostd::{GramError, GramFactor, MAX_K};
use rayon::prelude::*;

/// The sizes of a pair-Gram problem: B1 anchors, B2 candidates, m = k − 1 modalities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairDims {
    pub b1: usize,
    pub b2: usize,
    pub m: usize,
}

impl PairDims {
    /// Checks m (1..=15) and the three lengths.
    fn check(&self, cross: &[f64], inner: &[f64], norms: &[f64]) -> Result<(), GramError> {
        let PairDims { b1, b2, m } = *self;
        if b1 == 0 || b2 == 0 || m == 0 {
            return Err(GramError::EmptyInput);
        }
        if m + 1 > MAX_K {
            return Err(GramError::TooManyVectors { k: m + 1 });
        }
        for (found, expected) in [
            (cross.len(), b1 * b2 * m),
            (inner.len(), b2 * m * m),
            (norms.len(), b1),
        ] {
            if found != expected {
                return Err(GramError::DimensionMismatch { expected, found });
            }
        }
        Ok(())
    }
}

/// Pair (i, j)'s Gram matrix, row-major k×k.
#[inline]
fn gram(
    cross: &[f64],
    inner: &[f64],
    norms: &[f64],
    d: PairDims,
    i: usize,
    j: usize,
    g: &mut [f64],
) {
    let (b2, m, k) = (d.b2, d.m, d.m + 1);
    g[0] = norms[i];
    for t in 0..m {
        let c = cross[(i * b2 + j) * m + t];
        g[t + 1] = c;
        g[(t + 1) * k] = c;
        for s in 0..m {
            g[(s + 1) * k + t + 1] = inner[(j * m + s) * m + t];
        }
    }
}

/// V [B1, B2] with V[i, j] = sqrt(det G_ij). Rows in parallel (rayon).
///
/// Errors: `EmptyInput`, `TooManyVectors`, `DimensionMismatch` (lengths), `NonFinite`,
/// `NotPositiveSemidefinite` (a negative squared norm).
pub fn pair_volumes(
    cross: &[f64],
    inner: &[f64],
    norms: &[f64],
    d: PairDims,
) -> Result<Vec<f64>, GramError> {
    d.check(cross, inner, norms)?;
    let k = d.m + 1;
    let mut out = vec![0.0f64; d.b1 * d.b2];
    out.par_chunks_mut(d.b2)
        .enumerate()
        .try_for_each(|(i, row)| {
            let mut g = [0.0f64; MAX_K * MAX_K];
            for (j, o) in row.iter_mut().enumerate() {
                gram(cross, inner, norms, d, i, j, &mut g[..k * k]);
                *o = GramFactor::new(&g[..k * k], k)?.volume()?;
            }
            Ok(())
        })?;
    Ok(out)
}

/// Gradients of Σ up[i, j]·V[i, j] with respect to `cross`, `inner` and `norms` (same
/// shapes as the inputs).
#[derive(Clone, Debug, PartialEq)]
pub struct PairGrads {
    pub cross: Vec<f64>,
    pub inner: Vec<f64>,
    pub norms: Vec<f64>,
}

/// The backward pass of [`pair_volumes`] for the upstream gradient `up` [B1, B2]. Rows of
/// anchors in parallel: each owns its `cross` row and `norms` entry and adds into a
/// per-thread `inner` that the reduction sums. Same errors as [`pair_volumes`].
pub fn pair_volume_grads(
    cross: &[f64],
    inner: &[f64],
    norms: &[f64],
    up: &[f64],
    d: PairDims,
) -> Result<PairGrads, GramError> {
    d.check(cross, inner, norms)?;
    if up.len() != d.b1 * d.b2 {
        return Err(GramError::DimensionMismatch {
            expected: d.b1 * d.b2,
            found: up.len(),
        });
    }
    let (b2, m, k) = (d.b2, d.m, d.m + 1);
    let mut d_cross = vec![0.0f64; d.b1 * b2 * m];
    let mut d_norms = vec![0.0f64; d.b1];
    let d_inner = d_cross
        .par_chunks_mut(b2 * m)
        .zip(d_norms.par_iter_mut())
        .enumerate()
        .try_fold(
            || vec![0.0f64; b2 * m * m],
            |mut d_inner, (i, (dc_row, dn))| {
                let (mut g, mut dg) = ([0.0f64; MAX_K * MAX_K], [0.0f64; MAX_K * MAX_K]);
                for j in 0..b2 {
                    let u = up[i * b2 + j];
                    if u == 0.0 {
                        continue;
                    }
                    gram(cross, inner, norms, d, i, j, &mut g[..k * k]);
                    GramFactor::new(&g[..k * k], k)?.volume_gradient(&mut dg[..k * k])?;
                    *dn += u * dg[0];
                    for t in 0..m {
                        dc_row[j * m + t] += u * (dg[t + 1] + dg[(t + 1) * k]);
                        for s in 0..m {
                            d_inner[(j * m + s) * m + t] += u * dg[(s + 1) * k + t + 1];
                        }
                    }
                }
                Ok::<_, GramError>(d_inner)
            },
        )
        .try_reduce(
            || vec![0.0f64; b2 * m * m],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                Ok(a)
            },
        )?;
    Ok(PairGrads {
        cross: d_cross,
        inner: d_inner,
        norms: d_norms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cross/inner/norms of explicit vectors (anchor rows `a`, modality rows `ms[t]`), dim n.
    fn parts(a: &[f64], ms: &[&[f64]], n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, PairDims) {
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        let (b1, b2, m) = (a.len() / n, ms[0].len() / n, ms.len());
        let row = |v: &[f64], i: usize| v[i * n..(i + 1) * n].to_vec();
        let mut cross = vec![];
        for i in 0..b1 {
            for j in 0..b2 {
                for t in ms {
                    cross.push(dot(&row(a, i), &row(t, j)));
                }
            }
        }
        let mut inner = vec![];
        for j in 0..b2 {
            for s in ms {
                for t in ms {
                    inner.push(dot(&row(s, j), &row(t, j)));
                }
            }
        }
        let norms = (0..b1).map(|i| dot(&row(a, i), &row(a, i))).collect();
        (cross, inner, norms, PairDims { b1, b2, m })
    }

    #[test]
    fn volumes_equal_gram_nostd_and_gradients_equal_finite_differences() {
        let n = 4;
        let a = [0.3, -1.2, 0.5, 0.9, 1.1, 0.2, -0.7, 0.4];
        let m1 = [
            0.8, 0.1, -0.3, 0.6, -0.2, 0.9, 0.4, 0.1, 0.5, 0.5, 0.5, -0.5,
        ];
        let m2 = [
            0.1, 0.7, 0.2, -0.9, 0.6, -0.4, 0.3, 0.2, -0.1, 0.3, 0.8, 0.4,
        ];
        let (cross, inner, norms, d) = parts(&a, &[&m1, &m2], n);
        let v = pair_volumes(&cross, &inner, &norms, d).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                let rows = [&a[i * n..][..n], &m1[j * n..][..n], &m2[j * n..][..n]];
                let exact = gram_nostd::volume(&rows).unwrap();
                assert!((v[i * 3 + j] - exact).abs() <= 1e-14 * exact, "{i} {j}");
            }
        }
        let up: Vec<f64> = (0..6).map(|x| 0.5 - 0.3 * x as f64).collect();
        let g = pair_volume_grads(&cross, &inner, &norms, &up, d).unwrap();
        let f = |c: &[f64], i: &[f64], nn: &[f64]| -> f64 {
            let v = pair_volumes(c, i, nn, d).unwrap();
            v.iter().zip(&up).map(|(x, u)| x * u).sum()
        };
        // G is symmetric and read from one triangle: `inner[j, s, t]` and `inner[j, t, s]`
        // are one entry of G, so they are perturbed together and their gradients summed.
        let h = 1e-6;
        let m = d.m;
        let transpose = |e: usize| (e / (m * m)) * m * m + (e % m) * m + (e % (m * m)) / m;
        for (which, grad) in [(0, &g.cross), (1, &g.inner), (2, &g.norms)] {
            for e in 0..grad.len() {
                let mut plus = [cross.clone(), inner.clone(), norms.clone()];
                let mut minus = plus.clone();
                let mut want = grad[e];
                let mut touch = vec![e];
                if which == 1 && transpose(e) != e {
                    touch.push(transpose(e));
                    want += grad[transpose(e)];
                }
                for &t in &touch {
                    plus[which][t] += h;
                    minus[which][t] -= h;
                }
                let fd = (f(&plus[0], &plus[1], &plus[2]) - f(&minus[0], &minus[1], &minus[2]))
                    / (2.0 * h);
                assert!(
                    (fd - want).abs() < 1e-7,
                    "input {which} entry {e}: {fd} vs {want}"
                );
            }
        }
    }

    #[test]
    fn duplicated_tuple_has_zero_volume_and_zero_gradient() {
        let a = [0.6, 0.8, 0.0];
        let (cross, inner, norms, d) = parts(&a, &[&a], 3);
        assert_eq!(pair_volumes(&cross, &inner, &norms, d).unwrap(), vec![0.0]);
        let g = pair_volume_grads(&cross, &inner, &norms, &[1.0], d).unwrap();
        assert!(
            g.cross
                .iter()
                .chain(&g.inner)
                .chain(&g.norms)
                .all(|x| x.is_finite())
        );
    }

    #[test]
    fn wrong_lengths_and_bad_values_are_errors() {
        let d = PairDims { b1: 1, b2: 1, m: 1 };
        assert!(matches!(
            pair_volumes(&[1.0], &[1.0], &[1.0, 2.0], d),
            Err(GramError::DimensionMismatch { .. })
        ));
        assert_eq!(
            pair_volumes(&[f64::NAN], &[1.0], &[1.0], d),
            Err(GramError::NonFinite)
        );
        assert_eq!(
            pair_volume_grads(&[0.0], &[1.0], &[1.0], &[1.0, 1.0], d),
            Err(GramError::DimensionMismatch {
                expected: 1,
                found: 2
            })
        );
        let big = PairDims {
            b1: 1,
            b2: 1,
            m: MAX_K,
        };
        assert!(pair_volumes(&[], &[], &[1.0], big).is_err());
    }
}
