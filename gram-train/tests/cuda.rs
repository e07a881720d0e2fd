//! The training path on an NVIDIA GPU (build with `--features cuda`): the volume matrix on the
//! device against gram-nostd, its gradients against the CPU's, finite gradients at singular
//! tuples, the gradient census of the encoders, flat live device memory over 20 training steps,
//! and a checkpoint trained on the GPU that loads
//! and evaluates on the CPU.
//!
//! Without a CUDA device each test prints why it skips; with `GRAM_REQUIRE_CUDA=1` it fails
//! instead. Run on a GPU machine: `GRAM_REQUIRE_CUDA=1 cargo test -p gram-train --features cuda
//! --test cuda`, or the test binary built with `--no-run` (scripts/gpu-pack.sh) with `GRAM_REPO`
//! (repository root) and `GRAM_TRAIN_BIN` (the gram-train binary) set.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use gram_train::model::volume::{VolumePath, volume_matrix, volume_matrix_with};
use std::path::PathBuf;
use std::process::Command;

fn cuda() -> Option<Device> {
    let dev = gram_train::device::cuda(0).ok().filter(|d| d.is_cuda());
    if dev.is_none() {
        let why = if cfg!(feature = "cuda") {
            "no CUDA device"
        } else {
            "built without the cuda feature"
        };
        assert!(
            std::env::var("GRAM_REQUIRE_CUDA").as_deref() != Ok("1"),
            "GRAM_REQUIRE_CUDA=1 but {why}"
        );
        eprintln!("skipped: {why}");
    }
    dev
}

fn testdata(rel: &str) -> PathBuf {
    common::repo_root().join("testdata").join(rel)
}

use common::reference;

#[test]
fn volume_matrix_on_the_device_matches_gram_nostd() {
    let Some(dev) = cuda() else { return };
    for (case, m, tol) in [
        ("random_k2", 1, 1e-5),
        ("random_k3", 2, 1e-5),
        ("random_k4", 3, 1e-5),
        ("random_k5", 4, 1e-5),
        ("near_collinear_0.001", 2, 1e-5),
        ("near_collinear_1e-05", 2, 1e-4),
    ] {
        let (n1, d, a) = reference(&format!("{case}_anchor.npy"));
        let mods: Vec<(usize, usize, Vec<f32>)> = (0..m)
            .map(|t| reference(&format!("{case}_mod{t}.npy")))
            .collect();
        let on =
            |r: usize, c: usize, v: &[f32]| Tensor::from_vec(v.to_vec(), (r, c), &dev).unwrap();
        let mt: Vec<Tensor> = mods.iter().map(|(r, c, v)| on(*r, *c, v)).collect();
        let v = volume_matrix(&on(n1, d, &a), &mt).unwrap();
        assert!(v.device().is_cuda());
        let v = v.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
        let worst = common::worst_vs_gram_nostd(&v, &a, d, &mods);
        println!("{case}: CUDA worst relative error {worst:e}");
        assert!(worst <= tol, "{case}: {worst:e}");
    }
}

/// Values and input gradients of Σ w·V for f64 inputs on `dev`.
fn value_and_grads(dev: &Device, inputs: &[Vec<f64>], b: usize, d: usize) -> Vec<Vec<f64>> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|x| Var::from_vec(x.clone(), (b, d), dev).unwrap())
        .collect();
    let mods: Vec<Tensor> = vars[1..].iter().map(|v| v.as_tensor().clone()).collect();
    let v = volume_matrix_with(VolumePath::TensorOps, vars[0].as_tensor(), &mods).unwrap();
    let w: Vec<f64> = gram_nostd::uniform::Uniform::new(7).take(b * b).collect();
    let w = Tensor::from_vec(w, (b, b), dev).unwrap();
    let grads = (&v * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let mut out = vec![host(&v)];
    out.extend(vars.iter().map(|x| host(grads.get(x.as_tensor()).unwrap())));
    out
}

#[test]
fn device_gradients_equal_the_cpu_gradients() {
    let Some(dev) = cuda() else { return };
    let (b, d) = (33, 40);
    let mut inputs: Vec<Vec<f64>> = (0..3)
        .map(|s| {
            gram_nostd::uniform::Uniform::new(11 + 2 * s)
                .take(b * d)
                .collect()
        })
        .collect();
    // A duplicated tuple and a near-collinear one among the random ones.
    for x in 0..d {
        inputs[1][x] = inputs[0][x];
        inputs[2][x] = inputs[0][x];
        inputs[1][d + x] = inputs[0][d + x] * (1.0 + 1e-3 * (x as f64).sin());
    }
    let cpu = value_and_grads(&Device::Cpu, &inputs, b, d);
    let gpu = value_and_grads(&dev, &inputs, b, d);
    for (what, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        assert!(g.iter().all(|x| x.is_finite()), "output {what}: not finite");
        let scale = c.iter().fold(0f64, |s, v| s.max(v.abs()));
        let worst = c.iter().zip(g).fold(0f64, |s, (p, q)| s.max((p - q).abs()));
        println!(
            "output {what}: CUDA vs CPU worst difference {:e} of {scale:e}",
            worst
        );
        assert!(
            worst <= 1e-9 * scale,
            "output {what}: {worst:e} of {scale:e}"
        );
    }
}

#[test]
fn fused_layer_norm_and_softmax_on_the_device_equal_the_tensor_ops() {
    let Some(dev) = cuda() else { return };
    common::fused_layer_norm_parity(&dev);
    common::fused_softmax_parity(&dev);
}

/// Attention on the device (Candle's ops, recomputed in the backward) against the CPU's fused
/// FlashAttention op: output and ∂q, ∂k, ∂v within f32 rounding, with a padding mask and a
/// sequence longer than one key tile.
#[test]
fn attention_on_the_device_equals_the_cpu_op() {
    let Some(dev) = cuda() else { return };
    let (b, t, heads, hd) = (3, 150, 4, 16);
    let cpu = Device::Cpu;
    let host: Vec<Tensor> = (0..4)
        .map(|_| Tensor::randn(0f32, 1.0, (b, t, heads * hd), &cpu).unwrap())
        .collect();
    let m: Vec<f32> = (0..b * t)
        .map(|i| f32::from(i % t < [t, 70, 1][i / t]))
        .collect();
    let run = |d: &Device| {
        let x: Vec<Var> = host[..3]
            .iter()
            .map(|h| Var::from_tensor(&h.to_device(d).unwrap()).unwrap())
            .collect();
        let mask = Tensor::from_vec(m.clone(), (b, t), d).unwrap();
        let out = gram_train::ops::attention::attention(
            x[0].as_tensor(),
            x[1].as_tensor(),
            x[2].as_tensor(),
            heads,
            Some(&mask),
        )
        .unwrap();
        let w = host[3].to_device(d).unwrap();
        let g = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let mut all = vec![common::flat(&out.to_device(&cpu).unwrap())];
        for v in &x {
            all.push(common::flat(
                &g.get(v.as_tensor()).unwrap().to_device(&cpu).unwrap(),
            ));
        }
        all
    };
    for (name, (a, c)) in ["out", "dq", "dk", "dv"]
        .iter()
        .zip(run(&dev).iter().zip(&run(&cpu)))
    {
        let scale = c.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = a.iter().zip(c).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= 1e-5 * scale.max(1.0), "{name}: {worst} of {scale}");
    }
}

#[test]
fn encoders_train_on_the_device() {
    let Some(dev) = cuda() else { return };
    common::gradient_census(&dev);
}

/// Live device memory (the stream-ordered pool's used bytes, i.e. allocated tensors, not the
/// pool's cached reserve) is flat over 20 training steps, ±1 % (a leak would show as tens of
/// MB a step with MiniLM trainable).
#[test]
fn live_device_memory_stays_flat_over_20_steps() {
    let Some(dev) = cuda() else { return };
    let t = common::memory_over_steps(&dev, 20, || {
        gram_train::device::pool_bytes(&dev)
            .expect("the memory pool's used bytes")
            .0 as usize
    });
    eprintln!("pool used bytes after each step: {:?}", t.after);
    let (fifth, last) = (t.after[4], t.after[19]);
    assert!(
        last as f64 <= fifth as f64 * 1.01,
        "live device memory grew from {fifth} to {last} bytes over 15 steps"
    );
}

#[test]
fn a_checkpoint_trained_on_the_gpu_evaluates_on_the_cpu() {
    if cuda().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        // GRAM_TRAIN_BIN: the binary beside a test binary carried to a GPU machine.
        let bin = std::env::var("GRAM_TRAIN_BIN");
        let out = Command::new(bin.as_deref().unwrap_or(env!("CARGO_BIN_EXE_gram-train")))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {err}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let data = testdata("raw");
    let ckpt = tmp.path().join("run");
    let (d, c) = (data.to_str().unwrap(), ckpt.to_str().unwrap());
    run(&[
        "--device",
        "cuda",
        "fit",
        "--data",
        d,
        "--out",
        c,
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--no-progress",
    ]);
    // The same checkpoint embeds the same val split on either device.
    let emb = |device: &str| {
        let out = tmp.path().join(device);
        let o = out.to_str().unwrap();
        run(&[
            "--device",
            device,
            "embed",
            "--checkpoint",
            c,
            "--data",
            d,
            "--split",
            "val",
            "--out",
            o,
        ]);
        let mut all = Vec::new();
        for m in ["text", "video", "audio"] {
            let bytes = std::fs::read(out.join(format!("{m}.npy"))).unwrap();
            all.extend(
                npyz::NpyFile::new(&bytes[..])
                    .unwrap()
                    .into_vec::<f32>()
                    .unwrap(),
            );
        }
        all
    };
    let (on_cpu, on_gpu) = (emb("cpu"), emb("cuda"));
    assert_eq!(on_cpu.len(), on_gpu.len());
    let worst = on_cpu
        .iter()
        .zip(&on_gpu)
        .fold(0f32, |s, (a, b)| s.max((a - b).abs()));
    println!("embeddings of a GPU-trained checkpoint, CPU vs CUDA: worst difference {worst:e}");
    assert!(worst <= 1e-4, "{worst:e}");
}
