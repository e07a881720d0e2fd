//! Raw multimodal data end to end: the committed tiny dataset is what the generator makes;
//! pretrain from raw files with encoders → checkpoint → finetune from it on another dataset →
//! evaluate with DAM re-ranking; bad samples fail naming the manifest line, or are skipped and
//! counted.

use candle_core::Device;
use gram_train::config::TrainConfig;
use gram_train::eval::rerank::evaluate_checkpoint;
use gram_train::train::fit::{FitOptions, fit};
use std::path::{Path, PathBuf};
use std::process::Command;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/raw")
}

fn small(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        warmup: 1,
        embed_dim: 32,
        dam_hidden: 16,
        lr: 1e-3,
        log_every: 1,
        ..TrainConfig::default()
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "img", "video", "audio"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
            out.push((rel, std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[test]
fn committed_dataset_is_what_the_generator_makes() {
    let tmp = tempfile::tempdir().unwrap();
    gram_train::data::rawgen::generate(tmp.path(), [48, 16, 16], 0, &[]).unwrap();
    let (made, committed) = (files(tmp.path()), files(&testdata()));
    assert_eq!(made.len(), committed.len());
    for ((a, x), (b, y)) in made.iter().zip(&committed) {
        assert_eq!(a, b);
        assert!(x == y, "{a} differs from the committed file");
    }
}

fn weight(run: &Path, name: &str) -> Vec<f32> {
    let state = gram_train::train::checkpoint::load_state(run).unwrap();
    let t = gram_train::train::checkpoint::load_tensors(run, &state.weights, &Device::Cpu).unwrap();
    t[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn pretrain_finetune_and_evaluate_with_reranking() {
    let tmp = tempfile::tempdir().unwrap();
    let pre = tmp.path().join("pretrain");
    let s = fit(
        &testdata(),
        &pre,
        &small(4),
        FitOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    assert!(s.final_loss.is_finite());
    let state = gram_train::train::checkpoint::load_state(&pre).unwrap();
    assert_eq!(state.step, 4);
    assert!(pre.join("tokenizer-text.json").exists());

    // Finetune on a different dataset, with another schedule and the video tower frozen.
    let other = tmp.path().join("other");
    gram_train::data::rawgen::generate(&other, [24, 8, 8], 7, &[]).unwrap();
    let fine = tmp.path().join("finetune");
    let cfg = TrainConfig {
        lr: 5e-4,
        frozen: vec!["video".into()],
        ..small(3)
    };
    let opts = FitOptions {
        init_from: Some(pre.clone()),
        ..FitOptions::default()
    };
    fit(&other, &fine, &cfg, opts, &Device::Cpu).unwrap();
    let video = "enc.video.embeddings.patch_embedding.weight";
    assert_eq!(
        weight(&pre, video),
        weight(&fine, video),
        "frozen tower moved"
    );
    let text = "enc.text.embeddings.word_embeddings.weight";
    assert_ne!(
        weight(&pre, text),
        weight(&fine, text),
        "text encoder did not train"
    );
    let fine_state = gram_train::train::checkpoint::load_state(&fine).unwrap();
    assert_eq!(fine_state.step, 3);
    assert!(!fine_state.model.encoders[1].trainable);

    let e = evaluate_checkpoint(&fine, &testdata(), "test", Some(5), false, &Device::Cpu).unwrap();
    assert_eq!(e.samples, 16);
    let (k, r) = e.reranked.unwrap();
    assert_eq!(k, 5);
    for d in [
        &e.volume.anchor_to_data,
        &e.volume.data_to_anchor,
        &r.anchor_to_data,
        &r.data_to_anchor,
    ] {
        assert!(d.r1 <= d.r5 && d.r5 <= d.r10 && d.meanr >= 1.0 && d.meanr <= 16.0);
    }
    // Re-ranking only reorders the top 5: R@5 and R@10 cannot change.
    assert_eq!(r.anchor_to_data.r5, e.volume.anchor_to_data.r5);
    assert_eq!(r.data_to_anchor.r10, e.volume.data_to_anchor.r10);

    // The CLI prints the same evaluation.
    let out = Command::new(env!("CARGO_BIN_EXE_gram-train"))
        .args([
            "eval",
            "--json",
            "--rerank",
            "5",
            "--split",
            "test",
            "--checkpoint",
        ])
        .arg(&fine)
        .arg("--data")
        .arg(testdata())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["samples"], 16);
    assert_eq!(
        v["reranked"]["anchor_to_data"]["r1"].as_f64().unwrap(),
        r.anchor_to_data.r1
    );
}

/// A copy of the committed dataset with sample 3's first video frame corrupted, sample 5's
/// audio deleted (manifest lines 4 and 6).
fn damaged(dir: &Path) {
    let src = testdata();
    for sub in ["img", "video", "audio"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
        }
    }
    for f in ["dataset.json", "train.jsonl", "val.jsonl", "test.jsonl"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("video/3_0.png"), b"not a png at all").unwrap();
    std::fs::remove_file(dir.join("audio/5.wav")).unwrap();
}

fn gram_train(args: &[&str], data: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gram-train"))
        .args([
            "fit",
            "--no-progress",
            "--steps",
            "6",
            "--batch-size",
            "8",
            "--embed-dim",
            "16",
        ])
        .args(args)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn bad_samples_fail_with_their_line_or_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    damaged(&data);
    let out = gram_train(&[], &data, &tmp.path().join("run-a"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("train.jsonl line 4") || err.contains("train.jsonl line 6"),
        "{err}"
    );
    assert!(
        !tmp.path().join("run-a/state.json").exists(),
        "no checkpoint from a failed run"
    );

    // 6 steps of 8 cover all 48 training samples, so both bad ones are met.
    let out = gram_train(&["--skip-bad-samples"], &data, &tmp.path().join("run-b"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["skipped_samples"], 2);

    // A malformed manifest line is reported by number before any training.
    let mut manifest = std::fs::read_to_string(data.join("train.jsonl")).unwrap();
    manifest = manifest.replacen("{\"audio\"", "{audio", 1);
    std::fs::write(data.join("train.jsonl"), manifest).unwrap();
    let out = gram_train(&["--skip-bad-samples"], &data, &tmp.path().join("run-c"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("train.jsonl line 1:"), "{err}");
}

#[test]
fn cli_refuses_what_this_build_cannot_do_with_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gram-train"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let data = testdata();
    let out = tmp.path().join("run");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let multi = [
        "fit",
        "--data",
        d,
        "--out",
        o,
        "--world-size",
        "2",
        "--steps",
        "1",
        "--no-progress",
    ];
    let e = run(&multi);
    if cfg!(not(feature = "nccl")) {
        assert!(
            e.starts_with("error: ") && e.contains("nccl feature"),
            "{e}"
        );
    }
    let e = run(&[
        "fit",
        "--data",
        d,
        "--out",
        o,
        "--encoder",
        "text=gpt",
        "--steps",
        "1",
    ]);
    assert!(
        e.starts_with("error: --encoder text=gpt: unknown kind"),
        "{e}"
    );
    let e = run(&[
        "fit",
        "--data",
        d,
        "--out",
        o,
        "--encoder",
        "text=bert:/no/such/dir",
    ]);
    assert!(e.starts_with("error: /no/such/dir/config.json"), "{e}");
    let e = run(&["fit", "--data", d, "--out", o, "--resume", "--init-from", d]);
    assert!(e.contains("exclude each other"), "{e}");
    let e = run(&["eval", "--checkpoint", o, "--data", d]);
    assert!(e.starts_with("error: ") && e.contains("state.json"), "{e}");
    // Numeric flags are checked up front and named (not found inside the volume op).
    for (flag, value, named) in [
        ("--lr", "nan", "error: --lr (lr): NaN"),
        ("--lr", "-1", "error: --lr (lr): -1"),
        ("--encoder-lr-scale", "inf", "error: --encoder-lr-scale"),
        ("--dam-weight", "-0.5", "error: --dam-weight"),
        ("--batch-size", "1", "error: --steps, --batch-size"),
    ] {
        let e = run(&["fit", "--data", d, "--out", o, &format!("{flag}={value}")]);
        assert!(
            e.starts_with(named) && e.lines().count() == 1,
            "{flag} {value}: {e}"
        );
    }
    assert!(!out.join("state.json").exists());
}

/// `--encoder video=clip:ORG/NAME` loads the model from the local Hugging Face cache
/// ($HF_HUB_CACHE, refs/main → snapshots/HASH), with no network; a model the cache lacks fails
/// with one error line naming where it was looked for.
#[test]
fn an_encoder_named_by_model_id_loads_from_the_local_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let repo = cache.join("models--org--clip-tiny");
    let hash = "c".repeat(40);
    let snap = repo.join("snapshots").join(&hash);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), &hash).unwrap();
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/clip-tiny");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny.join(f), snap.join(f)).unwrap();
    }
    let fit = |model: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_gram-train"))
            .env("HF_HUB_CACHE", &cache)
            .args(["fit", "--no-progress", "--steps", "1", "--batch-size", "8"])
            .args(["--encoder", &format!("video=clip:{model}")])
            .arg("--data")
            .arg(testdata())
            .arg("--out")
            .arg(tmp.path().join(out))
            .output()
            .unwrap()
    };
    let o = fit("org/clip-tiny", "run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The checkpoint names the snapshot folder the encoder was loaded from.
    let state = std::fs::read_to_string(tmp.path().join("run/config.json"))
        .or_else(|_| std::fs::read_to_string(tmp.path().join("run/state.json")))
        .unwrap();
    assert!(state.contains(&hash), "{state}");

    let o = fit("org/absent", "run2");
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.starts_with("error: ") && e.lines().count() == 1, "{e}");
    assert!(
        e.contains("models--org--absent") && e.contains("huggingface-cli download"),
        "{e}"
    );
    assert!(!tmp.path().join("run2").exists());
}
