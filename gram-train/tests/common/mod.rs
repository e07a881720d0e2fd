//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// Row-major values of any tensor.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Largest absolute element-wise difference.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    flat(&(a - b).unwrap().abs().unwrap())
        .into_iter()
        .fold(0.0, f32::max)
}

/// `y` and the gradients of Σ y·r with respect to `wrt`.
pub fn value_and_grads(y: &Tensor, r: &Tensor, wrt: &[&Tensor]) -> (Vec<f32>, Vec<Vec<f32>>) {
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    (
        flat(y),
        wrt.iter().map(|t| flat(g.get(t).unwrap())).collect(),
    )
}

/// One GRAM + DAM step of the BERT/CLIP/AST model on `testdata/raw` on `dev`: every parameter
/// gets a gradient, and a nonzero one (candle's fused LayerNorm would silently cut them).
pub fn gradient_census(dev: &candle_core::Device) {
    use gram_train::model::encoders::Kind;
    gradient_census_of(dev, [Kind::Clip, Kind::Ast]);
}

/// [`gradient_census`] with the video and audio encoders of the given kinds.
pub fn gradient_census_of(
    dev: &candle_core::Device,
    [video, audio]: [gram_train::model::encoders::Kind; 2],
) {
    use gram_train::model::encoders::Kind;
    use gram_train::train::build::named_vars;
    use gram_train::train::distributed::SingleProcess;
    use gram_train::train::step::train_step;
    use rand::SeedableRng;
    let (cfg, l, src) = small_raw_model_with(dev, [video, audio]);
    assert_eq!(
        l.model
            .config
            .encoders
            .iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>(),
        [Kind::Bert, video, audio]
    );
    let inputs = src.batch(&[0, 1, 2, 3, 4, 5]).unwrap();
    let vars = named_vars(&l.varmap);
    let params: Vec<_> = vars.iter().map(|v| v.1.clone()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (loss, grads) = train_step(
        &l.model,
        &cfg,
        &inputs,
        &params,
        &SingleProcess,
        &mut rng,
        dev,
    )
    .unwrap();
    assert!(loss.is_finite());
    let mut missing = Vec::new();
    for (name, var) in &vars {
        assert!(var.device().same_device(dev), "{name} is not on {dev:?}");
        // Unused rows of the embedding tables have zero gradient; the tables must have one.
        match grads.get(var.as_tensor()) {
            Some(g) => {
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let typeless = name.contains("token_type") || name.contains("position_embeddings");
                if !(norm > 0.0 || typeless) {
                    missing.push(format!("{name} (zero)"));
                }
            }
            None => missing.push(name.clone()),
        }
    }
    assert!(missing.is_empty(), "no gradient for {missing:?}");
    assert!(vars.len() > 100, "{} parameters", vars.len());
}

/// Trains the BERT/CLIP/AST model of [`gradient_census`] for `steps` GRAM + DAM steps with
/// AdamW on `dev`; returns what `probe()` says once the model and optimizer are made, then at
/// each step while the gradients are held (the backward's graph should be gone by then) and
/// after the update, once they are dropped (what stays alive between steps).
pub fn memory_over_steps(
    dev: &candle_core::Device,
    steps: u64,
    probe: impl Fn() -> usize,
) -> MemoryTrace {
    use gram_train::data::source::batch_indices;
    use gram_train::train::distributed::SingleProcess;
    use gram_train::train::optim::{AdamW, AdamWConfig};
    use gram_train::train::step::{optimizer_params, train_step};
    use rand::SeedableRng;
    let (cfg, l, src) = small_raw_model(dev);
    let params = optimizer_params(&l, &cfg);
    let param_bytes = params.iter().map(|p| p.1.elem_count() * 4).sum();
    let vars: Vec<_> = params.iter().map(|p| p.1.clone()).collect();
    let adamw = AdamWConfig {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
    };
    let mut opt = AdamW::new(params, adamw).unwrap();
    let mut trace = MemoryTrace {
        start: probe(),
        with_grads: Vec::new(),
        after: Vec::new(),
        param_bytes,
    };
    for step in 0..steps {
        let inputs = src
            .batch(&batch_indices(0, step, cfg.batch_size, src.len()))
            .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step);
        let (loss, grads) = train_step(
            &l.model,
            &cfg,
            &inputs,
            &vars,
            &SingleProcess,
            &mut rng,
            dev,
        )
        .unwrap();
        assert!(loss.is_finite());
        trace.with_grads.push(probe());
        let norm = opt.grad_norm(&grads).unwrap();
        opt.step(&grads, 1e-4, (1.0 / norm.max(1.0)).min(1.0))
            .unwrap();
        drop((grads, inputs));
        trace.after.push(probe());
    }
    trace
}

/// What [`memory_over_steps`] measured, in bytes.
#[derive(Debug)]
pub struct MemoryTrace {
    pub start: usize,
    pub with_grads: Vec<usize>,
    pub after: Vec<usize>,
    pub param_bytes: usize,
}

/// The small BERT/CLIP/AST model (seed 0) for `testdata/raw` on `dev`, batch 6, with its
/// config and the training split.
pub fn small_raw_model(
    dev: &candle_core::Device,
) -> (
    gram_train::config::TrainConfig,
    gram_train::train::build::Loaded,
    Box<dyn gram_train::data::source::Source>,
) {
    use gram_train::model::encoders::Kind;
    small_raw_model_with(dev, [Kind::Clip, Kind::AstMel])
}

/// [`small_raw_model`] with the video and audio encoders of the given kinds.
pub fn small_raw_model_with(
    dev: &candle_core::Device,
    [video, audio]: [gram_train::model::encoders::Kind; 2],
) -> (
    gram_train::config::TrainConfig,
    gram_train::train::build::Loaded,
    Box<dyn gram_train::data::source::Source>,
) {
    use gram_train::data::source::open_source;
    use gram_train::model::encoders::EncoderSpec;
    use gram_train::train::build::{build_model, model_config_for};
    let data = repo_root().join("testdata/raw");
    let mut cfg = gram_train::config::TrainConfig {
        batch_size: 6,
        embed_dim: 16,
        dam_hidden: 8,
        ..Default::default()
    };
    cfg.encoders.insert("video".into(), EncoderSpec::of(video));
    cfg.encoders.insert("audio".into(), EncoderSpec::of(audio));
    let mc = model_config_for(&cfg, &data).unwrap();
    let l = build_model(&mc, 0, dev).unwrap();
    let src = open_source(&data, "train", &mc, &l.tokenizers, false).unwrap();
    (cfg, l, src)
}

/// The repository root: `GRAM_REPO` if set (a test binary carried to another machine), else
/// where this crate was built.
pub fn repo_root() -> std::path::PathBuf {
    match std::env::var_os("GRAM_REPO") {
        Some(p) => p.into(),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

/// Our fused LayerNorm (CPU op, or candle's CUDA kernel) against the tensor-op version on `dev`,
/// values and the gradients of input, weight and bias.
pub fn fused_layer_norm_parity(dev: &Device) {
    let dev = dev.clone();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let ln = gram_train::ops::layer_norm::LayerNorm::new(vb.pp("ln"), 24, 1e-6).unwrap();
    for (name, mean) in [("ln.weight", 1f32), ("ln.bias", 0.0)] {
        let t = Tensor::randn(mean, 0.3, 24, &dev).unwrap();
        varmap.data().lock().unwrap()[name].set(&t).unwrap();
    }
    // Rows at very different scales and offsets, as activations are.
    let x = candle_core::Var::from_tensor(
        &(Tensor::randn(0f32, 1.0, (4, 7, 24), &dev).unwrap() * 50.0)
            .unwrap()
            .broadcast_add(&Tensor::randn(3f32, 10.0, (4, 7, 1), &dev).unwrap())
            .unwrap(),
    )
    .unwrap();
    let r = Tensor::randn(0f32, 1.0, (4, 7, 24), &dev).unwrap();
    let grads = |y: Tensor| {
        let vars = varmap.data().lock().unwrap();
        let (w, b) = (vars["ln.weight"].as_tensor(), vars["ln.bias"].as_tensor());
        let (y, g) = value_and_grads(&y, &r, &[x.as_tensor(), w, b]);
        (y, g[0].clone(), g[1].clone(), g[2].clone())
    };
    let fused = grads(ln.forward(x.as_tensor()).unwrap());
    let ops = grads(ln.forward_ops(x.as_tensor()).unwrap());
    let close = |a: &[f32], b: &[f32], what: &str| {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (p, q) in a.iter().zip(b) {
            assert!(
                (p - q).abs() <= 1e-4 * scale,
                "{what}: {p} vs {q} (scale {scale})"
            );
        }
    };
    close(&fused.0, &ops.0, "y");
    close(&fused.1, &ops.1, "dx");
    close(&fused.2, &ops.2, "dw");
    close(&fused.3, &ops.3, "db");
}

/// Our fused softmax against candle's composed softmax on `dev`, forward and backward.
pub fn fused_softmax_parity(dev: &Device) {
    let dev = dev.clone();
    let x = candle_core::Var::from_tensor(&(Tensor::randn(0f32, 3.0, (3, 4, 5, 9), &dev).unwrap()))
        .unwrap();
    let r = Tensor::randn(0f32, 1.0, (3, 4, 5, 9), &dev).unwrap();
    let run = |y: Tensor| {
        let (y, g) = value_and_grads(&y, &r, &[x.as_tensor()]);
        (y, g[0].clone())
    };
    let fused = run(gram_train::ops::softmax::softmax_last_dim(x.as_tensor()).unwrap());
    let ops = run(candle_nn::ops::softmax(x.as_tensor(), candle_core::D::Minus1).unwrap());
    for (a, b) in fused.0.iter().zip(&ops.0).chain(fused.1.iter().zip(&ops.1)) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

/// A reference .npy of `testdata/reference` as (rows, columns, values).
pub fn reference(name: &str) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(repo_root().join("testdata/reference").join(name)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (
        shape[0] as usize,
        shape[1] as usize,
        npy.into_vec().unwrap(),
    )
}

/// Worst relative error of a volume matrix `v` against gram-nostd's exact volumes of the tuples
/// (anchor row i of `a` with width `d`, row j of every modality in `mods`).
pub fn worst_vs_gram_nostd(
    v: &[Vec<f64>],
    a: &[f32],
    d: usize,
    mods: &[(usize, usize, Vec<f32>)],
) -> f64 {
    let mut worst = 0f64;
    for (i, row) in v.iter().enumerate() {
        for (j, &got) in row.iter().enumerate() {
            let mut t: Vec<&[f32]> = vec![&a[i * d..(i + 1) * d]];
            t.extend(mods.iter().map(|(_, c, v)| &v[j * c..(j + 1) * c]));
            let want = gram_nostd::volume(&t).unwrap();
            worst = worst.max((got - want).abs() / want);
        }
    }
    worst
}

/// The small synthetic dataset the training tests share: `dims` per modality, `train` samples
/// (64 validation, 64 test), 4 private and 2 unique factors, noise 0.1, depth 1.
pub fn small_synth(dims: &[usize], train: usize) -> gram_train::data::synth::SynthConfig {
    gram_train::data::synth::SynthConfig {
        dims: dims.to_vec(),
        private: 4,
        unique: 2,
        noise: 0.1,
        depth: 1,
        train,
        val: 64,
        test: 64,
        ..Default::default()
    }
}
