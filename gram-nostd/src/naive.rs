//! The published float32 recipe, for comparison only: Gram matrix from f32 dot products,
//! determinant by LU with partial pivoting in f32 (as `torch.det`), then `sqrt(|det|)`.
//!
//! It is here so benchmarks and accuracy tables measure against the real thing. It loses all
//! digits near collinearity, overflows or underflows at large or tiny norms, and returns
//! rounding noise instead of 0 for dependent sets. Do not use it to score.

/// `sqrt(|det(AᵀA)|)` in f32. `vectors` must be 1..=16 slices of equal length (else 0).
pub fn volume_f32(vectors: &[&[f32]]) -> f32 {
    let k = vectors.len();
    if k == 0 || k > crate::MAX_K || vectors.iter().any(|v| v.len() != vectors[0].len()) {
        return 0.0;
    }
    let mut g = [0.0f32; crate::MAX_K * crate::MAX_K];
    for i in 0..k {
        for j in 0..=i {
            let d = dot_f32(vectors[i], vectors[j]);
            g[i * k + j] = d;
            g[j * k + i] = d;
        }
    }
    libm::sqrtf(libm::fabsf(det_f32(&mut g[..k * k], k)))
}

/// f32 dot product with 8 independent accumulators, as a BLAS kernel would vectorise it (so
/// the recipe is timed at its real speed, not at a sequential sum's).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Determinant of the row-major k×k matrix `a` (overwritten) by Gaussian elimination with
/// partial pivoting, in f32.
pub fn det_f32(a: &mut [f32], k: usize) -> f32 {
    debug_assert!(a.len() >= k * k);
    let mut det = 1.0f32;
    for c in 0..k {
        let p = (c..k)
            .max_by(|&x, &y| libm::fabsf(a[x * k + c]).total_cmp(&libm::fabsf(a[y * k + c])))
            .unwrap_or(c);
        if a[p * k + c] == 0.0 {
            return 0.0;
        }
        if p != c {
            for t in 0..k {
                a.swap(p * k + t, c * k + t);
            }
            det = -det;
        }
        let pivot = a[c * k + c];
        det *= pivot;
        for r in c + 1..k {
            let f = a[r * k + c] / pivot;
            for t in c..k {
                a[r * k + t] -= f * a[c * k + t];
            }
        }
    }
    det
}
