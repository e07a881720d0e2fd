//! The CPU kernels that decide speed on a given x86 machine, each variant against the others in
//! one run, alternating, median of ROUNDS with the range:
//!   - the scoring backend's cross-dot GEMM `c = a·bᵀ` at its tile shape (1024 candidates ×
//!     256 anchors, D = 512 and 128), one thread: `matrixmultiply` vs `gemm` (AVX-512 where
//!     the CPU has it) — what `gram_host::cpu::GemmKernel::for_this_cpu` chooses between;
//!   - gram-train's fused element-wise ops (GELU forward + backward over 8192 × 1536, LayerNorm
//!     forward + backward over 8192 × 384, softmax over 6144 rows of 128) at each SIMD level
//!     the CPU has (`gram_train::ops::simd`), on rayon's threads;
//!   - gram-train's Linear forward at the pretraining step's shapes (GFLOP/s, no comparison:
//!     PyTorch's side is `torch.matmul` at the same shapes and threads).
//!
//! Run: `cargo run --release -p gram-benches --bin cpu_kernels -- [ROUNDS]` (default 7).

use candle_core::{Device, Tensor, Var};
use gram_benches::{cpu_description, median_range, unit_rows};
use gram_host::cpu::GemmKernel;
use gram_host::cpu::gemm::sgemm_abt_with;
use gram_train::ops::simd::{self, Level};
use std::time::Instant;

// As the training binaries run (fresh buffers per op come from retained memory, not page faults).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A variant of a comparison: its name and one timed run.
type Variant<'a> = (String, Box<dyn FnMut() -> f64 + 'a>);
/// An op on a tensor (forward; its backward through Candle's autograd).
type TensorOp<'a> = &'a dyn Fn(&Tensor) -> candle_core::Result<Tensor>;

fn seconds(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// One alternating comparison: `variants` run in turn, `rounds` times; prints a table row each.
fn compare(title: &str, unit: &str, rounds: usize, variants: &mut [Variant<'_>]) {
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
        let reps = (2e10 / flops).ceil() as usize; // ≈ 0.2 s a variant a round
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

/// Forward + backward of `f` on `x`, in ms: the median of 5 calls.
fn fwd_bwd(x: &Var, f: TensorOp) -> f64 {
    let t: Vec<f64> = (0..5)
        .map(|_| {
            seconds(|| {
                let y = f(x.as_tensor()).unwrap();
                let g = y.sum_all().unwrap().backward().unwrap();
                assert!(g.get(x.as_tensor()).is_some());
            }) * 1e3
        })
        .collect();
    median_range(&t).0
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
    let ops: [(&str, &Var, TensorOp); 3] = [
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
        let mut variants: Vec<Variant> = levels
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
    simd::set_level(Level::Avx2);
}

/// gram-train's Linear forward (`ops::linear_cpu`: the `gemm` crate, rows split over rayon's
/// threads) at the pretraining step's shapes: y [m, n] = x [m, k]·Wᵀ, in GFLOP/s.
fn linear_part(rounds: usize) {
    let dev = Device::Cpu;
    println!(
        "\nLinear forward y = x·Wᵀ, {} threads",
        rayon::current_num_threads()
    );
    println!("| m × n × k | forward GFLOP/s, median of {rounds} (range) | forward + backward |");
    println!("|---|---|---|");
    for (m, n, k) in [
        (832, 1536, 384),
        (832, 384, 1536),
        (4352, 768, 192),
        (4352, 192, 768),
    ] {
        let x =
            Var::from_tensor(&Tensor::from_vec(unit_rows(m, k, 8), (m, k), &dev).unwrap()).unwrap();
        let w =
            Var::from_tensor(&Tensor::from_vec(unit_rows(n, k, 9), (n, k), &dev).unwrap()).unwrap();
        let reps = (2e10 / (2.0 * (m * n * k) as f64)).ceil() as usize;
        let (mut fwd, mut both) = (Vec::new(), Vec::new());
        for r in 0..=rounds {
            let f = seconds(|| {
                for _ in 0..reps {
                    gram_train::ops::linear_cpu::linear(&x, &w, None).unwrap();
                }
            });
            // Forward and backward: ∂x = ∂y·W and ∂W = ∂yᵀ·x besides y (3 GEMMs).
            let fb = seconds(|| {
                for _ in 0..reps {
                    let y = gram_train::ops::linear_cpu::linear(&x, &w, None).unwrap();
                    y.sum_all().unwrap().backward().unwrap();
                }
            });
            if r > 0 {
                fwd.push(2.0 * (m * n * k * reps) as f64 / f / 1e9);
                both.push(6.0 * (m * n * k * reps) as f64 / fb / 1e9);
            }
        }
        let (fm, fl, fh) = median_range(&fwd);
        let (bm, bl, bh) = median_range(&both);
        println!("| {m} × {n} × {k} | {fm:.0} ({fl:.0}–{fh:.0}) | {bm:.0} ({bl:.0}–{bh:.0}) |");
    }
}

fn main() {
    gram_train::process::configure();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    println!("CPU: {}", cpu_description());
    gemm_part(rounds);
    linear_part(rounds);
    fused_part(rounds);
}
