//! The CPU kernels that decide speed on a given x86 machine, each variant against the others in
//! one run, alternating, median of ROUNDS with the range:
//!   - the scoring backend's cross-dot GEMM `c = a·bᵀ` at its tile shape (1024 candidates ×
//!     256 anchors, D = 512 and 128), one thread: `matrixmultiply` vs `gemm` (AVX-512 where
//!     the CPU has it) — what `gram_host::cpu::GemmKernel::for_this_cpu` chooses between;
//!   - gram-train's fused element-wise ops (GELU forward + backward over 8192 × 1536, LayerNorm
//!     forward + backward over 8192 × 384, softmax over 6144 rows of 128) at each SIMD level
//!     the CPU has (`gram_train::ops::simd`), on rayon's threads.
//!
//! Run: `cargo run --release -p gram-benches --bin cpu_kernels -- [ROUNDS]` (default 7).

use candle_core::{Device, Tensor, Var};
use gram_benches::{cpu_description, median_range, unit_rows};
use gram_host::cpu::GemmKernel;
use gram_host::cpu::gemm::sgemm_abt_with;
use gram_train::ops::simd::{self, Level};
use std::time::Instant;

fn seconds(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// One alternating comparison: `variants` run in turn, `rounds` times; prints a table row each.
fn compare(
    title: &str,
    unit: &str,
    rounds: usize,
    variants: &mut [(String, Box<dyn FnMut() -> f64 + '_>)],
) {
    let mut times = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (t, (_, run)) in times.iter_mut().zip(variants.iter_mut()) {
            t.push(run());
        }
    }
    println!("\n{title}");
    println!("| variant | {unit}, median of {rounds} (range) | ÷ first |");
    println!("|---|---|---|");
    let first = median_range(&times[0]).0;
    for ((name, _), t) in variants.iter().zip(&times) {
        let (med, lo, hi) = median_range(t);
        println!(
            "| {name} | {med:.2} ({lo:.2}–{hi:.2}) | {:.2}× |",
            med / first
        );
    }
}

fn gemm_part(rounds: usize) {
    for d in [512usize, 128] {
        let (r, s) = (1024usize, 256usize);
        let a = unit_rows(r, d, 1);
        let b = unit_rows(s, d, 2);
        let mut c = vec![0.0f32; r * s];
        let flops = 2.0 * (r * s * d) as f64;
        let reps = (4e9 / flops).ceil() as usize;
        let mut run = |kernel: GemmKernel| {
            let c = &mut c;
            let secs = seconds(|| {
                for _ in 0..reps {
                    sgemm_abt_with(kernel, &a, &b, d, c);
                }
            });
            flops * reps as f64 / secs / 1e9
        };
        // Warm both up (page faults, the crates' packing buffers).
        run(GemmKernel::MatrixMultiply);
        run(GemmKernel::Gemm);
        let run = std::cell::RefCell::new(run);
        compare(
            &format!("cross-dot GEMM c = a·bᵀ, {r}×{s}×{d}, one thread"),
            "GFLOP/s",
            rounds,
            &mut [
                (
                    "matrixmultiply".into(),
                    Box::new(|| (run.borrow_mut())(GemmKernel::MatrixMultiply)),
                ),
                (
                    "gemm".into(),
                    Box::new(|| (run.borrow_mut())(GemmKernel::Gemm)),
                ),
            ],
        );
    }
}

/// Forward + backward of `f` on `x`, in ms.
fn fwd_bwd(x: &Var, f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>) -> f64 {
    seconds(|| {
        let y = f(x.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
    }) * 1e3
}

fn fused_part(rounds: usize) {
    let levels: Vec<Level> = [Level::Baseline, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|&l| l <= Level::detect())
        .collect();
    let dev = Device::Cpu;
    let rand = |rows: usize, cols: usize, seed: u64| {
        let v: Vec<f32> = unit_rows(rows, cols, seed)
            .iter()
            .map(|x| x * 40.0)
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, (rows, cols), &dev).unwrap()).unwrap()
    };
    let gelu_x = rand(8192, 1536, 3);
    let ln_x = rand(8192, 384, 4);
    let ln = gram_train::ops::layer_norm::LayerNorm::new(
        candle_nn::VarBuilder::from_varmap(
            &candle_nn::VarMap::new(),
            candle_core::DType::F32,
            &dev,
        ),
        384,
        1e-12,
    )
    .unwrap();
    let sm_x = rand(6144, 128, 5);
    let ops: [(&str, &Var, &dyn Fn(&Tensor) -> candle_core::Result<Tensor>); 3] = [
        (
            "GELU (erf) forward + backward, 8192 × 1536",
            &gelu_x,
            &gram_train::ops::gelu::gelu_erf,
        ),
        ("LayerNorm forward + backward, 8192 × 384", &ln_x, &|x| {
            ln.forward(x)
        }),
        (
            "softmax forward + backward, 6144 × 128",
            &sm_x,
            &gram_train::ops::softmax::softmax_last_dim,
        ),
    ];
    for (title, x, f) in ops {
        for &l in &levels {
            simd::set_level(l);
            fwd_bwd(x, f); // warm-up
        }
        let mut variants: Vec<(String, Box<dyn FnMut() -> f64>)> = levels
            .iter()
            .map(|&l| {
                let run: Box<dyn FnMut() -> f64> = Box::new(move || {
                    simd::set_level(l);
                    fwd_bwd(x, f)
                });
                (format!("{l:?}"), run)
            })
            .collect();
        compare(
            &format!("{title}, {} threads", rayon::current_num_threads()),
            "ms",
            rounds,
            &mut variants,
        );
    }
    simd::set_level(Level::detect());
}

fn main() {
    gram_train::process::configure();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    println!("CPU: {}", cpu_description());
    gemm_part(rounds);
    fused_part(rounds);
}
