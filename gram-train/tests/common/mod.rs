//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::Tensor;

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
    use gram_train::distributed::SingleProcess;
    use gram_train::encoders::Kind;
    use gram_train::train::{
        TrainConfig, build_model, model_config_for, named_vars, open_source, train_step,
    };
    use rand::SeedableRng;
    let data = repo_root().join("testdata/raw");
    let cfg = TrainConfig {
        batch_size: 6,
        embed_dim: 16,
        dam_hidden: 8,
        ..TrainConfig::default()
    };
    let mc = model_config_for(&cfg, &data).unwrap();
    assert_eq!(
        mc.encoders.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [Kind::Bert, Kind::Clip, Kind::Ast]
    );
    let l = build_model(&mc, 0, dev).unwrap();
    let src = open_source(&data, "train", &mc, &l.tokenizers, false).unwrap();
    let (inputs, _) = src.batch(&[0, 1, 2, 3, 4, 5]).unwrap();
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

/// The repository root: `GRAM_REPO` if set (a test binary carried to another machine), else
/// where this crate was built.
pub fn repo_root() -> std::path::PathBuf {
    match std::env::var_os("GRAM_REPO") {
        Some(p) => p.into(),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}
