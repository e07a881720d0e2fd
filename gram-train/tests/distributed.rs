//! Data parallelism on a simulated world: several ranks as threads of one process, each with
//! its slice of the batch, must reproduce the single-process loss and gradients on the
//! concatenated batch exactly (up to f32 rounding) — the gather/local-loss/all-reduce
//! bookkeeping that a multi-GPU run relies on.

mod common;

use candle_core::{Device, Var};
use gram_train::config::{LossKind, MissingRule, TrainConfig};
use gram_train::data::source::HostBatch;
use gram_train::model::encoders::HostInput;
use gram_train::model::gram::ModelConfig;
use gram_train::train::build::{build_model, named_vars};
use gram_train::train::distributed::{Collective, SingleProcess, ThreadWorld};
use gram_train::train::step::train_step;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIMS: [usize; 3] = [12, 10, 8];

fn config(dam_hidden: usize) -> ModelConfig {
    ModelConfig {
        modalities: vec!["a".into(), "b".into(), "c".into()],
        anchor: "a".into(),
        input_dims: DIMS.to_vec(),
        embed_dim: 6,
        mlp_hidden: 7,
        dam_hidden,
        init_temperature: 0.2,
        encoders: Vec::new(),

        placeholders: Vec::new(),
    }
}

/// Rows `rows` of every modality; `lacks(t, i)`: sample i has no vector of modality t.
fn batch(
    rows: std::ops::Range<usize>,
    all: &[Vec<f32>],
    lacks: impl Fn(usize, usize) -> bool,
) -> HostBatch {
    let inputs = all
        .iter()
        .zip(DIMS)
        .map(|(m, d)| HostInput::Features {
            data: m[rows.start * d..rows.end * d].to_vec(),
            dim: d,
        })
        .collect();
    let missing = (0..all.len())
        .map(|t| rows.clone().map(|i| lacks(t, i)).collect())
        .collect();
    HostBatch {
        inputs,
        kept: rows.collect(),
        missing,
    }
}

/// Which samples lack which modality in the masked runs: modality 1 every third sample,
/// modality 2 every fourth (sample 10 lacks both); the anchor (0) never.
fn pattern(t: usize, i: usize) -> bool {
    (t == 1 && i % 3 == 1) || (t == 2 && i % 4 == 2)
}

/// (loss, gradients in parameter order) of every rank of a `world`-rank run on `n` samples,
/// the samples lacking modalities by `lacks` and scored by `rule`.
fn run_masked(
    loss: LossKind,
    dam: usize,
    world: usize,
    n: usize,
    rule: MissingRule,
    lacks: fn(usize, usize) -> bool,
) -> Vec<(f64, Vec<Vec<f32>>)> {
    let cfg = TrainConfig {
        loss,
        dam_weight: if dam > 0 { 0.5 } else { 0.0 },
        label_smoothing: 0.1,
        missing: rule,
        ..TrainConfig::default()
    };
    let mut mc = config(dam);
    if rule == MissingRule::Placeholder {
        mc.placeholders = vec!["b".into(), "c".into()];
    }
    let loaded = build_model(&mc, 3, &Device::Cpu).unwrap();
    let vars = named_vars(&loaded.varmap);
    let params: Vec<Var> = vars.into_iter().map(|v| v.1).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let data: Vec<Vec<f32>> = DIMS
        .iter()
        .map(|&d| (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let b = n / world;
    let step = |coll: &dyn Collective| {
        let r = coll.rank();
        let inputs = batch(r * b..(r + 1) * b, &data, lacks);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (l, g) = train_step(
            &loaded.model,
            &cfg,
            &inputs,
            &params,
            coll,
            &mut rng,
            &Device::Cpu,
        )
        .unwrap();
        let grads = params
            .iter()
            .map(|p| match g.get(p.as_tensor()) {
                Some(t) => t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                None => vec![0.0; p.elem_count()],
            })
            .collect();
        (l, grads)
    };
    if world == 1 {
        return vec![step(&SingleProcess)];
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = ThreadWorld::new(world)
            .into_iter()
            .map(|rank| s.spawn(move || step(&rank)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// [`run_masked`] of complete samples.
fn run(loss: LossKind, dam: usize, world: usize, n: usize) -> Vec<(f64, Vec<Vec<f32>>)> {
    run_masked(loss, dam, world, n, MissingRule::Present, |_, _| false)
}

fn worst_relative(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let scale = a
        .iter()
        .flatten()
        .fold(0f32, |m, x| m.max(x.abs()))
        .max(1e-12);
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f32::max)
}

#[test]
fn ranks_reproduce_the_single_process_loss_and_gradients() {
    for loss in [LossKind::Gram, LossKind::Pairwise, LossKind::Symile] {
        let single = &run(loss, 0, 1, 12)[0];
        for world in [2, 3, 4] {
            for (rank, (l, g)) in run(loss, 0, world, 12).iter().enumerate() {
                assert!(
                    (l - single.0).abs() < 1e-5 * single.0.abs(),
                    "{loss:?} world {world} rank {rank}: loss {l} vs {}",
                    single.0
                );
                let err = worst_relative(&single.1, g);
                assert!(
                    err < 1e-5,
                    "{loss:?} world {world} rank {rank}: gradient error {err}"
                );
                assert!(single.1.iter().flatten().any(|&x| x != 0.0));
            }
        }
    }
}

#[test]
fn ranks_reproduce_the_single_process_loss_and_gradients_with_missing_modalities() {
    for rule in [
        MissingRule::Present,
        MissingRule::Scaled,
        MissingRule::Placeholder,
    ] {
        for loss in [LossKind::Gram, LossKind::Pairwise, LossKind::Symile] {
            let single = &run_masked(loss, 0, 1, 12, rule, pattern)[0];
            assert!(single.0.is_finite());
            assert_ne!(
                single.0,
                run(loss, 0, 1, 12)[0].0,
                "{rule:?} {loss:?}: masks ignored"
            );
            for world in [2, 3] {
                for (rank, (l, g)) in run_masked(loss, 0, world, 12, rule, pattern)
                    .iter()
                    .enumerate()
                {
                    let what = format!("{rule:?} {loss:?} world {world} rank {rank}");
                    assert!((l - single.0).abs() < 1e-5 * single.0.abs(), "{what}: {l}");
                    let err = worst_relative(&single.1, g);
                    assert!(err < 1e-5, "{what}: gradient error {err}");
                }
            }
        }
    }
}

#[test]
fn a_complete_batch_trains_bit_for_bit_as_without_masks() {
    // Masks that mark nothing take the unmasked path exactly, whatever the rule, in one
    // process and across ranks.
    for rule in [MissingRule::Present, MissingRule::Placeholder] {
        for world in [1, 2] {
            let plain = run(LossKind::Gram, 8, world, 12);
            let masked = run_masked(LossKind::Gram, 8, world, 12, rule, |_, _| false);
            if rule == MissingRule::Present {
                assert_eq!(plain, masked, "{rule:?} world {world}");
            } else {
                // The placeholders are extra parameters (gradient 0); the rest is identical.
                assert_eq!(plain[0].0, masked[0].0);
            }
        }
    }
}

#[test]
fn with_dam_every_rank_holds_the_same_averaged_gradient() {
    // DAM's hard negatives come from each rank's local block, so it is not the
    // single-process DAM term; but the all-reduced gradient must agree across ranks.
    let ranks = run(LossKind::Gram, 8, 3, 12);
    for (l, g) in &ranks[1..] {
        assert_eq!(*l, ranks[0].0);
        assert!(worst_relative(&ranks[0].1, g) < 1e-6);
    }
    assert!(ranks[0].1.iter().flatten().all(|x| x.is_finite()));
}

#[test]
fn a_two_rank_fit_trains_the_same_weights_as_one_process() {
    use gram_train::data::synth::generate;
    use gram_train::train::fit::{FitOptions, fit, fit_with};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = common::small_synth(&[16, 12, 8], 256);
    generate(&cfg, &data).unwrap();
    let train = TrainConfig {
        steps: 6,
        batch_size: 32,
        warmup: 1,
        embed_dim: 8,
        dam_weight: 0.0,
        ..TrainConfig::default()
    };
    let single = tmp.path().join("single");
    fit(&data, &single, &train, FitOptions::default(), &Device::Cpu).unwrap();
    let multi = tmp.path().join("multi");
    std::thread::scope(|s| {
        for rank in ThreadWorld::new(2) {
            let (data, multi, train) = (&data, &multi, &train);
            s.spawn(move || {
                fit_with(
                    data,
                    multi,
                    train,
                    FitOptions::default(),
                    &Device::Cpu,
                    &rank,
                )
                .unwrap()
            });
        }
    });
    let weights = |dir: &std::path::Path| {
        let st = gram_train::train::checkpoint::load_state(dir).unwrap();
        gram_train::train::checkpoint::load_tensors(dir, &st.weights, &Device::Cpu).unwrap()
    };
    let (a, b) = (weights(&single), weights(&multi));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let d = common::max_abs_diff(t, &b[name]);
        assert!(d < 1e-4, "{name} differs by {d} after 6 steps");
    }
}
