//! The training loop end to end on a tiny synthetic dataset: determinism, exact resume,
//! NaN stop, embeddings that `gram eval` reads, TOML config.

use candle_core::Device;
use gram_train::config::{LossKind, TrainConfig};
use gram_train::data::synth::generate;
use gram_train::train::fit::{FitOptions, fit};
use std::path::Path;
use std::process::Command;

mod common;

fn tiny_dataset(dir: &Path) {
    let cfg = common::small_synth(&[32, 24, 16], 512);
    generate(&cfg, dir).unwrap();
}

fn tiny_config(loss: LossKind) -> TrainConfig {
    TrainConfig {
        loss,
        steps: 8,
        batch_size: 32,
        warmup: 2,
        embed_dim: 16,
        dam_hidden: 16,
        log_every: 1,
        ..TrainConfig::default()
    }
}

fn losses(metrics: &Path) -> Vec<f64> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
        .collect()
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let state = gram_train::train::checkpoint::load_state(dir).unwrap();
    let t = gram_train::train::checkpoint::load_tensors(dir, &state.weights, &Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, x)| (k, x.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn same_seed_same_curve_and_resume_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_dataset(&data);
    for loss in [LossKind::Gram, LossKind::Pairwise, LossKind::Symile] {
        let cfg = tiny_config(loss);
        let (a, b, c) = (
            tmp.path().join(format!("{loss:?}-a")),
            tmp.path().join(format!("{loss:?}-b")),
            tmp.path().join(format!("{loss:?}-c")),
        );
        fit(&data, &a, &cfg, FitOptions::default(), &Device::Cpu).unwrap();
        // b prepares batches in line instead of on the prefetch thread: same curve.
        let inline = FitOptions {
            prefetch: 0,
            ..FitOptions::default()
        };
        fit(&data, &b, &cfg, inline, &Device::Cpu).unwrap();
        let la = losses(&a.join("metrics.jsonl"));
        assert_eq!(la.len(), 8);
        assert!(la.iter().all(|x| x.is_finite()));
        assert_eq!(
            la,
            losses(&b.join("metrics.jsonl")),
            "{loss:?}: same seed, same curve (prefetched or not)"
        );
        // Interrupted after 3 steps, then resumed: bit-identical to the straight run.
        let stop = FitOptions {
            stop_after: Some(3),
            ..FitOptions::default()
        };
        fit(&data, &c, &cfg, stop, &Device::Cpu).unwrap();
        assert_eq!(
            gram_train::train::checkpoint::load_state(&c).unwrap().step,
            3
        );
        fit(
            &data,
            &c,
            &cfg,
            FitOptions {
                resume: true,
                ..FitOptions::default()
            },
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            losses(&c.join("metrics.jsonl")),
            la,
            "{loss:?}: resumed curve"
        );
        assert_eq!(weights(&c), weights(&a), "{loss:?}: resumed weights");
        // Old checkpoint files are cleaned up; exactly one set remains.
        let files: Vec<String> = std::fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            files.iter().filter(|f| f.starts_with("weights-")).count(),
            1,
            "{files:?}"
        );
    }
    // A different seed changes the curve.
    let d = tmp.path().join("other-seed");
    fit(
        &data,
        &d,
        &TrainConfig {
            seed: 7,
            ..tiny_config(LossKind::Gram)
        },
        FitOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    assert_ne!(
        losses(&d.join("metrics.jsonl")),
        losses(&tmp.path().join("Gram-a/metrics.jsonl"))
    );
}

#[test]
fn training_improves_retrieval_and_embeddings_feed_gram_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_dataset(&data);
    let run = tmp.path().join("run");
    let cfg = TrainConfig {
        steps: 40,
        lr: 5e-3,
        batch_size: 64,
        embed_dim: 32,
        snapshot_every: 15,
        ..tiny_config(LossKind::Gram)
    };
    let s = fit(&data, &run, &cfg, FitOptions::default(), &Device::Cpu).unwrap();
    // Snapshots at step 0, every 15 steps and the last: the val embeddings of that step.
    let mut snaps: Vec<String> = std::fs::read_dir(run.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    let want: Vec<String> = [0, 15, 30, 40]
        .iter()
        .flat_map(|s| ["audio", "text", "video"].map(|m| format!("{s}_{m}.npy")))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(snaps, want);
    let val_emb = tmp.path().join("emb-val");
    gram_train::eval::export::embed(&run, &data, "val", false, &val_emb, &Device::Cpu).unwrap();
    for m in ["text", "video", "audio"] {
        let a = std::fs::read(run.join(format!("snapshots/40_{m}.npy"))).unwrap();
        assert_eq!(
            a,
            std::fs::read(val_emb.join(format!("{m}.npy"))).unwrap(),
            "{m}"
        );
    }
    let opts = gram_host::report::ReportOptions {
        out: tmp.path().join("report"),
        sampling: Default::default(),
    };
    let steps =
        gram_host::report::report_snapshots(&run.join("snapshots"), Some("text"), &opts).unwrap();
    let r1 = |i: usize| {
        steps[i]["retrieval"]["anchor_to_data"]["r1"]
            .as_f64()
            .unwrap()
    };
    assert!(r1(3) > r1(0), "{steps}");
    assert!(tmp.path().join("report/curves.png").is_file());
    let r1 = s.val.unwrap()["anchor_to_data"]["r1"].as_f64().unwrap();
    assert!(
        r1 > 100.0 / 64.0 * 5.0,
        "val R@1 {r1} should beat chance (1.6%) clearly"
    );
    let emb = tmp.path().join("emb");
    gram_train::eval::export::embed(&run, &data, "test", false, &emb, &Device::Cpu).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_gram-train"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    // gram eval (the library behind it) on the written files.
    let p = |m: &str| emb.join(format!("{m}.npy")).to_string_lossy().to_string();
    let r = gram_host::commands::eval(
        &p("text"),
        &[p("video"), p("audio")],
        None,
        Default::default(),
    )
    .unwrap();
    assert!(r.anchor_to_data.r1 > 5.0 * 100.0 / 64.0, "{r:?}");
}

#[test]
fn divergence_stops_with_the_step_and_keeps_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_dataset(&data);
    let run = tmp.path().join("run");
    let cfg = TrainConfig {
        lr: 1e38,
        warmup: 0,
        clip: 0.0,
        checkpoint_every: 1,
        steps: 6,
        ..tiny_config(LossKind::Pairwise)
    };
    let e = fit(&data, &run, &cfg, FitOptions::default(), &Device::Cpu).unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("step "), "{e}");
    assert!(text.contains("last good checkpoint"), "{e}");
    let state = gram_train::train::checkpoint::load_state(&run).unwrap();
    let gram_train::error::Error::Diverged {
        step: failed_at, ..
    } = e
    else {
        panic!("expected Error::Diverged, got {e:?}")
    };
    assert_eq!(
        state.step, failed_at,
        "checkpoint of the last completed step is kept"
    );
}

#[test]
fn toml_config_and_cli_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bin = env!("CARGO_BIN_EXE_gram-train");
    let o = Command::new(bin)
        .args([
            "synth",
            "--out",
            data.to_str().unwrap(),
            "--n",
            "128",
            "--dims",
            "8,8,8",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let toml = tmp.path().join("cfg.toml");
    std::fs::write(
        &toml,
        "loss = \"symile\"\nsteps = 3\nbatch_size = 16\nembed_dim = 8\nwarmup = 1\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(bin)
        .args([
            "fit",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--config",
            toml.to_str().unwrap(),
            "--steps",
            "2",
            "--no-progress",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = gram_train::train::checkpoint::load_state(&out).unwrap();
    assert_eq!(state.train.loss, LossKind::Symile);
    assert_eq!(state.train.steps, 2, "flag overrides the file");
    std::fs::write(&toml, "stepz = 3\n").unwrap();
    let o = Command::new(bin)
        .args([
            "fit",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--config",
            toml.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error:"));
}
