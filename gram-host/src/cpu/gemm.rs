//! The f32 GEMM behind the CPU backend's cross dots, `c = a·bᵀ`, by one of two well-kept crates,
//! the faster for this CPU chosen at run time ([`GemmKernel::for_this_cpu`]):
//!
//! - `gemm` with its AVX-512 kernels (`x86-v4`) where the CPU has AVX-512F: on an Intel Xeon it
//!   ran the backend's tile 1.2–1.3× faster than matrixmultiply, one thread (README,
//!   Performance; `cargo run --release -p gram-benches --bin cpu_kernels`).
//! - `matrixmultiply` elsewhere (AVX2/FMA at most): the backend was tuned with it on an AMD EPYC,
//!   where `gemm` has not been measured against it.
//!
//! Both are called so that an element's value does not depend on the shape of the block that
//! computes it — a search over shards, or merged from several machines, must equal the search
//! over one index bit for bit. matrixmultiply sums each element in one order whatever the shape.
//! `gemm` does too within its general path when the inner dimension fits one of its k-blocks
//! (it never blocks k below 512), but takes other algorithms for small shapes (a horizontal
//! kernel when m·n ≤ 256, matrix–vector products when m or n is 1): so the inner dimension is
//! cut into fixed chunks of [`K_CHUNK`], and a block too small for the general path is padded
//! with zero rows into a scratch product. A test checks every element against blocks of other
//! shapes, bit for bit.
//!
//! Accuracy: each element is a sum of d f32 products in f32; the backend's error model
//! (Higham–Mary, [`super::gemm_dot_rel_err`]) holds for any summation order.

use std::sync::OnceLock;

/// Which crate computes the GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    MatrixMultiply,
    Gemm,
}

impl GemmKernel {
    /// `Gemm` where the CPU has AVX-512F, else `MatrixMultiply` (decided once).
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

/// The inner dimension per `gemm` call: at most one of its k-blocks (it never blocks below 512).
pub const K_CHUNK: usize = 512;

/// Blocks of at least this many rows and columns (17 × 17 > 256) take `gemm`'s general path.
const MIN_SIDE: usize = 17;

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
    match kernel {
        GemmKernel::MatrixMultiply => matrixmultiply_abt(a, b, (r, s, d), c),
        GemmKernel::Gemm if r < MIN_SIDE || s < MIN_SIDE => {
            // Zero rows appended: the rows kept are computed exactly as in a larger block.
            let (rp, sp) = (r.max(MIN_SIDE), s.max(MIN_SIDE));
            let mut ap = vec![0f32; rp * d];
            let mut bp = vec![0f32; sp * d];
            ap[..r * d].copy_from_slice(a);
            bp[..s * d].copy_from_slice(b);
            let mut cp = vec![0f32; rp * sp];
            gemm_abt(&ap, &bp, (rp, sp, d), &mut cp);
            for (row, out) in cp.chunks_exact(sp).zip(c.chunks_exact_mut(s)) {
                out.copy_from_slice(&row[..s]);
            }
        }
        GemmKernel::Gemm => gemm_abt(a, b, (r, s, d), c),
    }
}

fn matrixmultiply_abt(a: &[f32], b: &[f32], (r, s, d): (usize, usize, usize), c: &mut [f32]) {
    // SAFETY: the caller checked the slices against the shapes: a is r×d with strides (d, 1),
    // bᵀ is d×s read through b with strides (1, d), c is r×s with strides (s, 1); c does not
    // alias a or b (&mut).
    unsafe {
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
    }
}

/// `gemm`'s general path, the inner dimension in chunks of [`K_CHUNK`] (the first written, the
/// others added). r, s ≥ [`MIN_SIDE`].
fn gemm_abt(a: &[f32], b: &[f32], (r, s, d): (usize, usize, usize), c: &mut [f32]) {
    for k0 in (0..d).step_by(K_CHUNK) {
        let kb = K_CHUNK.min(d - k0);
        // SAFETY: as in `matrixmultiply_abt`, offset by k0 < d along each row; c is read only
        // after the first chunk wrote it (`read_dst`).
        unsafe {
            gemm::gemm(
                r,
                s,
                kb,
                c.as_mut_ptr(),
                1,
                s as isize,
                k0 > 0,
                a.as_ptr().add(k0),
                1,
                d as isize,
                b.as_ptr().add(k0),
                d as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNELS: [GemmKernel; 2] = [GemmKernel::MatrixMultiply, GemmKernel::Gemm];

    fn rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        gram_nostd::uniform::Uniform::new(seed)
            .take(n * d)
            .map(|x| x as f32 - 0.5)
            .collect()
    }

    /// Both kernels against f64 sums on ragged shapes (one row, one column, d = 1, d past one
    /// chunk, empty), writing into a NaN-filled output so an element left unwritten shows.
    #[test]
    fn matches_f64() {
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 64),
            (40, 1, 1100),
            (1, 70, 9),
            (0, 4, 3),
        ];
        for ((r, s, d), kernel) in shapes.into_iter().flat_map(|x| KERNELS.map(|k| (x, k))) {
            let (a, b) = (rows(r, d, 7), rows(s, d, 8));
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

    /// Every element equals, bit for bit, the same dot product computed in blocks of other
    /// shapes (row ranges of a, column ranges of b, down to 1 × 1), as shard searches rely on.
    #[test]
    fn an_element_does_not_depend_on_the_shape() {
        let (r, s) = (300, 700);
        let blocks = [
            (0, 4, 0, 64),
            (4, 300, 64, 700),
            (17, 18, 3, 4),
            (256, 300, 0, 700),
            (0, 300, 699, 700),
            (5, 21, 40, 57),
        ];
        for (kernel, d) in KERNELS
            .into_iter()
            .flat_map(|k| [(k, 512), (k, 1100), (k, 96)])
        {
            let (a, b) = (rows(r, d, 9), rows(s, d, 10));
            let mut whole = vec![0f32; r * s];
            sgemm_abt_with(kernel, &a, &b, d, &mut whole);
            for (r0, r1, s0, s1) in blocks {
                let mut part = vec![0f32; (r1 - r0) * (s1 - s0)];
                sgemm_abt_with(kernel, &a[r0 * d..r1 * d], &b[s0 * d..s1 * d], d, &mut part);
                for i in r0..r1 {
                    for j in s0..s1 {
                        assert_eq!(
                            part[(i - r0) * (s1 - s0) + (j - s0)].to_bits(),
                            whole[i * s + j].to_bits(),
                            "{kernel:?} d = {d}: ({i}, {j}) in the block {r0}..{r1} × {s0}..{s1}"
                        );
                    }
                }
            }
        }
    }
}
