//! The f32 GEMM behind the CPU backend's cross dots, `c = a·bᵀ`: two well-kept crates, the
//! faster one for this CPU chosen at run time.
//!
//! - [`GemmKernel::MatrixMultiply`] (`matrixmultiply`): AVX2/FMA kernels at most. Kept where
//!   the CPU has no AVX-512: the backend was tuned with it on an AMD EPYC (AVX2), where `gemm`
//!   has not been measured against it.
//! - [`GemmKernel::Gemm`] (`gemm`, with its `x86-v4` kernels): AVX-512 where the CPU has it,
//!   dispatched by the crate itself. On an Intel Xeon with AVX-512 it ran the backend's tile
//!   shape 1.2–1.3× faster than matrixmultiply, one thread (README, Performance; `cargo run
//!   --release -p gram-benches --bin cpu_kernels`).
//!
//! Accuracy: either way each element is a sum of d f32 products in f32, in some blocked order;
//! the backend's error model (Higham–Mary, [`super::gemm_dot_rel_err`]) holds for any order.

use std::sync::OnceLock;

/// Which crate computes the GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    MatrixMultiply,
    Gemm,
}

impl GemmKernel {
    /// The kernel for this CPU (decided once): `gemm` where the CPU has AVX-512F, else
    /// `matrixmultiply`.
    pub fn for_this_cpu() -> GemmKernel {
        static CHOSEN: OnceLock<GemmKernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                return GemmKernel::Gemm;
            }
            GemmKernel::MatrixMultiply
        })
    }
}

/// `c = a · bᵀ` for row-major a [r, d], b [s, d], c [r, s], in f32, with the kernel for this
/// CPU. Panics if the slices do not have those shapes (a caller's bug); d = 0 reads as no rows.
pub fn sgemm_abt(a: &[f32], b: &[f32], d: usize, c: &mut [f32]) {
    sgemm_abt_with(GemmKernel::for_this_cpu(), a, b, d, c)
}

/// [`sgemm_abt`] with a given kernel (to compare them).
pub fn sgemm_abt_with(kernel: GemmKernel, a: &[f32], b: &[f32], d: usize, c: &mut [f32]) {
    let (r, s) = (a.len() / d.max(1), b.len() / d.max(1));
    assert!(
        a.len() == r * d && b.len() == s * d && c.len() == r * s,
        "sgemm_abt shapes"
    );
    if r * s == 0 {
        return; // d = 0 lands here too: no rows can be told apart
    }
    // SAFETY (both): the pointers come from slices whose lengths were just checked against
    // the shapes and strides passed: a is r×d with strides (d, 1), bᵀ is d×s read through b
    // with strides (1, d), c is r×s with strides (s, 1). c does not alias a or b (&mut).
    match kernel {
        GemmKernel::MatrixMultiply => unsafe {
            matrixmultiply::sgemm(
                r,
                d,
                s,
                1.0,
                a.as_ptr(),
                d as isize,
                1,
                b.as_ptr(),
                1,
                d as isize,
                0.0,
                c.as_mut_ptr(),
                s as isize,
                1,
            )
        },
        // `read_dst` false: the crate never reads c (its kernels store without loading).
        GemmKernel::Gemm => unsafe {
            gemm::gemm(
                r,
                s,
                d,
                c.as_mut_ptr(),
                1,
                s as isize,
                false,
                a.as_ptr(),
                1,
                d as isize,
                b.as_ptr(),
                d as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kernels against f64 sums on ragged shapes (one row, one column, d = 1, empty),
    /// writing into a NaN-filled output so an element left unwritten shows.
    #[test]
    fn both_kernels_match_f64() {
        let mut rng = gram_nostd::uniform::Uniform::new(7);
        for (r, s, d) in [
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 64),
            (40, 1, 513),
            (1, 70, 9),
            (0, 4, 3),
        ] {
            let a: Vec<f32> = (&mut rng).take(r * d).map(|x| x as f32 - 0.5).collect();
            let b: Vec<f32> = (&mut rng).take(s * d).map(|x| x as f32 - 0.5).collect();
            for kernel in [GemmKernel::MatrixMultiply, GemmKernel::Gemm] {
                let mut c = vec![f32::NAN; r * s];
                sgemm_abt_with(kernel, &a, &b, d, &mut c);
                for i in 0..r {
                    for j in 0..s {
                        let (exact, size) = (0..d).fold((0.0f64, 0.0f64), |(e, z), t| {
                            let p = a[i * d + t] as f64 * b[j * d + t] as f64;
                            (e + p, z + p.abs())
                        });
                        let err = (c[i * s + j] as f64 - exact).abs();
                        assert!(
                            err <= (d as f64 + 1.0) * f32::EPSILON as f64 * size + 1e-30,
                            "{kernel:?} {r}×{s}×{d} at ({i}, {j}): {} vs {exact}",
                            c[i * s + j]
                        );
                    }
                }
            }
        }
    }
}
