use std::time::Instant;
fn run(label: &str, m: usize, n: usize, k: usize, lhs_cs: isize, lhs_rs: isize, rhs_cs: isize, rhs_rs: isize) {
    let x = vec![0.5f32; m * k];
    let w = vec![0.25f32; n * k];
    let mut y = vec![0f32; m * n];
    let mut best = f64::MAX;
    for _ in 0..6 {
        let t = Instant::now();
        unsafe {
            gemm::gemm(m, n, k, y.as_mut_ptr(), 1, n as isize, false, x.as_ptr(), lhs_cs, lhs_rs,
                w.as_ptr(), rhs_cs, rhs_rs, 1.0, 1.0, false, false, false, gemm::Parallelism::Rayon(2));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{label} m{m} n{n} k{k}: {:.1} GFLOP/s", 2.0 * (m * k * n) as f64 / best / 1e9);
}
fn main() {
    let (bt, i, o) = (8192usize, 384usize, 1536usize);
    // forward y = x wᵀ: x [bt, i] row-major, w [o, i] row-major
    run("fwd", bt, o, i, 1, i as isize, i as isize, 1);
    // dx = dy w: dy [bt, o], w [o, i]
    run("dx", bt, i, o, 1, o as isize, 1, i as isize);
    // dw = dyᵀ x: dyᵀ [o, bt] (dy row-major [bt, o] => lhs_cs = o, lhs_rs = 1), x [bt, i]
    run("dw", o, i, bt, o as isize, 1, 1, i as isize);
    run("dw2", i, o, bt, i as isize, 1, 1, o as isize);
}
