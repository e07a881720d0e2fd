//! Training on samples that lack a modality: the masked loss's gradients against central
//! finite differences, `present` equal to the volume of the vectors present, no gradient into a
//! missing row, the datasets (feature and raw) end to end through fit, embed and gram-host's
//! evaluator, and every refusal.

use candle_core::{Device, Tensor, Var};
use gram_train::config::{MissingRule, TrainConfig};
use gram_train::data::synth::{SynthConfig, generate};
use gram_train::model::losses::gram_loss;
use gram_train::model::missing::complete;
use gram_train::model::volume::volume_matrix;
use gram_train::train::fit::{FitOptions, fit};
use std::path::Path;
use std::process::Command;

mod common;

/// Deterministic values in (−0.5, 0.5).
fn values(n: usize, seed: u64) -> Vec<f64> {
    gram_nostd::uniform::Uniform::new(seed).take(n).collect()
}

/// 0/1 masks [b] per modality: modality 1 misses rows 1 and 3, modality 2 rows 2 and 3 (row 3
/// lacks both); the anchor (0) none.
fn masks(b: usize) -> Vec<Option<Tensor>> {
    let lacks =
        |t: usize, i: usize| (t == 1 && (i == 1 || i == 3)) || (t == 2 && (i == 2 || i == 3));
    (0..3)
        .map(|t| {
            (t > 0).then(|| {
                let m: Vec<f64> = (0..b).map(|i| f64::from(u8::from(lacks(t, i)))).collect();
                Tensor::from_vec(m, b, &Device::Cpu).unwrap()
            })
        })
        .collect()
}

/// The GRAM loss of three modalities' rows (and placeholders) under `rule`.
fn masked_loss(rule: MissingRule, x: &[Tensor], p: &[Option<Tensor>], b: usize) -> Tensor {
    let emb = complete(x, &masks(b), rule, p, 0).unwrap();
    let v = volume_matrix(&emb[0], &emb[1..]).unwrap();
    let inv_tau = Tensor::new(3.0f64, &Device::Cpu).unwrap();
    gram_loss(&v, &inv_tau, 0.1).unwrap().loss
}

#[test]
fn masked_gram_loss_gradients_match_finite_differences() {
    let (b, d) = (5, 4);
    let dev = Device::Cpu;
    for rule in [MissingRule::Present, MissingRule::Placeholder] {
        let mut leaves: Vec<Var> = (0..3)
            .map(|t| Var::from_vec(values(b * d, 11 + 10 * t), (b, d), &dev).unwrap())
            .collect();
        if rule == MissingRule::Placeholder {
            leaves.extend((1..3).map(|t| Var::from_vec(values(d, 97 + t), d, &dev).unwrap()));
        }
        let split = |l: &[Tensor]| -> (Vec<Tensor>, Vec<Option<Tensor>>) {
            let p = match rule {
                MissingRule::Placeholder => vec![None, Some(l[3].clone()), Some(l[4].clone())],
                _ => vec![None; 3],
            };
            (l[..3].to_vec(), p)
        };
        let ts: Vec<Tensor> = leaves.iter().map(|v| v.as_tensor().clone()).collect();
        let (x, p) = split(&ts);
        let grads = masked_loss(rule, &x, &p, b).backward().unwrap();
        let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let mut worst = 0f64;
        for (which, leaf) in leaves.iter().enumerate() {
            let an = host(grads.get(leaf.as_tensor()).unwrap());
            let base = host(leaf.as_tensor());
            for idx in 0..base.len() {
                let at = |delta: f64| {
                    let mut l: Vec<Tensor> = ts.clone();
                    let mut v = base.clone();
                    v[idx] += delta;
                    l[which] = Tensor::from_vec(v, leaf.shape(), &dev).unwrap();
                    let (x, p) = split(&l);
                    masked_loss(rule, &x, &p, b).to_scalar::<f64>().unwrap()
                };
                let h = 1e-6;
                let fd = (at(h) - at(-h)) / (2.0 * h);
                worst = worst.max((fd - an[idx]).abs() / fd.abs().max(an[idx].abs()).max(1e-3));
            }
            // A missing row of a modality gets no gradient at all.
            if (1..3).contains(&which) {
                let lacking: &[usize] = if which == 1 { &[1, 3] } else { &[2, 3] };
                for &i in lacking {
                    assert!(an[i * d..(i + 1) * d].iter().all(|&g| g == 0.0), "{rule:?}");
                }
            }
        }
        assert!(
            worst <= 1e-5,
            "{rule:?}: worst relative gradient error {worst:e}"
        );
    }
}

#[test]
fn present_scores_the_volume_of_the_vectors_present() {
    let (b, d) = (5, 4);
    let x: Vec<Tensor> = (0..3)
        .map(|t| Tensor::from_vec(values(b * d, 11 + 10 * t as u64), (b, d), &Device::Cpu).unwrap())
        .collect();
    let emb = complete(&x, &masks(b), MissingRule::Present, &[None, None, None], 0).unwrap();
    let v = volume_matrix(&emb[0], &emb[1..])
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let rows: Vec<Vec<f64>> = x
        .iter()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
        .collect();
    let lacks = [vec![], vec![1, 3], vec![2, 3]];
    for i in 0..b {
        for j in 0..b {
            let mut tuple: Vec<&[f64]> = vec![&rows[0][i * d..(i + 1) * d]];
            for t in 1..3 {
                if !lacks[t].contains(&j) {
                    tuple.push(&rows[t][j * d..(j + 1) * d]);
                }
            }
            let want = gram_nostd::volume(&tuple).unwrap();
            assert!(
                (v[i][j] - want).abs() <= 1e-12 * want.max(1e-300),
                "({i}, {j})"
            );
        }
    }
    // `scaled`: each missing axis times c_t, the median over the complete samples (0 and 4)
    // of modality t's distance from the span of the sample's other non-anchor vector.
    let emb = complete(&x, &masks(b), MissingRule::Scaled, &[None, None, None], 0).unwrap();
    let s = volume_matrix(&emb[0], &emb[1..])
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let row = |t: usize, j: usize| &rows[t][j * d..(j + 1) * d];
    let c = |t: usize| {
        let other = 3 - t;
        let dist = |j: usize| {
            gram_nostd::volume(&[row(t, j), row(other, j)]).unwrap()
                / gram_nostd::volume(&[row(other, j)]).unwrap()
        };
        0.5 * (dist(0) + dist(4))
    };
    for i in 0..b {
        for (j, factor) in [(0, 1.0), (1, c(1)), (2, c(2)), (3, c(1) * c(2))] {
            assert!(
                (s[i][j] - factor * v[i][j]).abs() <= 1e-12 * v[i][j],
                "({i}, {j})"
            );
        }
    }
}

fn synth(dir: &Path, missing: &[(&str, f64)]) {
    let cfg = SynthConfig {
        missing: missing.iter().map(|(m, f)| (m.to_string(), *f)).collect(),
        ..common::small_synth(&[24, 16, 12], 256)
    };
    generate(&cfg, dir).unwrap();
}

fn small(rule: MissingRule) -> TrainConfig {
    TrainConfig {
        steps: 6,
        batch_size: 32,
        warmup: 1,
        embed_dim: 8,
        dam_hidden: 8,
        missing: rule,
        ..TrainConfig::default()
    }
}

/// Rows of an f32 .npy that are NaN.
fn nan_rows(path: &Path) -> Vec<usize> {
    let m = gram_host::input::load_allowing_missing(&path.to_string_lossy()).unwrap();
    m.1.iter()
        .enumerate()
        .filter(|(_, x)| **x)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn an_incomplete_feature_dataset_trains_embeds_and_evaluates_under_every_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, &[("audio", 0.3)]);
    let lacking = nan_rows(&data.join("test_audio.npy"));
    assert_eq!(lacking.len(), 19, "round(0.3 · 64)");
    assert!(nan_rows(&data.join("train_video.npy")).is_empty());
    for rule in [
        MissingRule::Present,
        MissingRule::Scaled,
        MissingRule::Placeholder,
        MissingRule::Drop,
    ] {
        let run = tmp.path().join(format!("{rule:?}"));
        let s = fit(
            &data,
            &run,
            &small(rule),
            FitOptions::default(),
            &Device::Cpu,
        )
        .unwrap();
        assert!(s.final_loss.is_finite(), "{rule:?}");
        assert!(s.val.is_some(), "{rule:?}: validation over incomplete rows");
        let emb = run.join("emb");
        gram_train::eval::export::embed(&run, &data, "test", false, &emb, &Device::Cpu).unwrap();
        assert_eq!(nan_rows(&emb.join("audio.npy")), lacking, "{rule:?}");
        assert!(nan_rows(&emb.join("text.npy")).is_empty());
        // gram-host reads them as missing vectors.
        let f = |m: &str| emb.join(format!("{m}.npy")).to_string_lossy().into_owned();
        let r = gram_host::commands::eval(
            &f("text"),
            &[f("video"), f("audio")],
            Some(gram_host::missing::MissingRule::Present),
            gram_nostd::Ties::Pessimistic,
        )
        .unwrap();
        assert!(r.anchor_to_data.r1 > 0.0, "{rule:?}");
        // gram-train eval, re-ranking with the DAM head, reads them too.
        let e = gram_train::eval::rerank::evaluate_checkpoint(
            &run,
            &data,
            "test",
            Some(5),
            false,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(e.samples, 64);
        assert_eq!(
            e.volume.anchor_to_data.r1, r.anchor_to_data.r1,
            "{rule:?}: volume ranks as gram eval --missing present"
        );
        assert!(e.reranked.is_some());
    }
    let state = gram_train::train::checkpoint::load_state(&tmp.path().join("Placeholder")).unwrap();
    assert_eq!(state.model.placeholders, ["audio"]);
    // Finetuning a checkpoint that has no placeholders with the placeholder rule is refused.
    let opts = FitOptions {
        init_from: Some(tmp.path().join("Present")),
        ..FitOptions::default()
    };
    let cfg = small(MissingRule::Placeholder);
    let e = fit(&data, &tmp.path().join("ft"), &cfg, opts, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("no placeholder for 'audio'"), "{e}");
}

#[test]
fn drop_trains_on_the_complete_samples_only() {
    use gram_train::data::source::{Complete, Source};
    let tmp = tempfile::tempdir().unwrap();
    // Four modalities, two of them incomplete: a sample may lack both and keep the third.
    let cfg = SynthConfig {
        modalities: ["text", "video", "audio", "imu"].map(String::from).to_vec(),
        dims: vec![24, 16, 12, 8],
        train: 256,
        val: 64,
        test: 64,
        missing: vec![("audio".into(), 0.25), ("video".into(), 0.25)],
        ..SynthConfig::default()
    };
    generate(&cfg, tmp.path()).unwrap();
    let split = gram_train::data::features::load_split(tmp.path(), "train").unwrap();
    let incomplete = (0..split.len()).filter(|&i| split.incomplete(i)).count();
    assert!(incomplete > 64 && incomplete < 128, "{incomplete}");
    let n = split.len();
    let c = Complete::of(Box::new(split));
    assert_eq!(c.len(), n - incomplete);
    let b = c.batch(&(0..c.len()).collect::<Vec<_>>()).unwrap();
    assert!(!b.incomplete());
    assert_eq!(b.kept, (0..c.len()).collect::<Vec<_>>());
}

fn gram_train_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gram-train"))
        .args(args)
        .output()
        .unwrap()
}

/// One `error:` line naming `what`, exit code 2.
fn refused(o: std::process::Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains(what),
        "{err} (wanted {what})"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    if err.contains("--missing") {
        assert!(err.starts_with("error: --missing "), "{err}");
    }
}

#[test]
fn what_cannot_be_missing_is_refused_with_its_file_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d");
    let o = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    // Generators: the anchor, an unknown modality, a fraction outside [0, 1).
    for (arg, why) in [
        ("text=0.2", "the anchor cannot be missing"),
        ("speech=0.2", "is not one of"),
        ("audio=1", "must be in [0, 1)"),
        ("audio", "expected MOD=FRACTION"),
    ] {
        let d = out.to_string_lossy();
        refused(
            gram_train_cli(&["synth", "--out", &d, "--n", "64", "--missing", arg]),
            why,
        );
        refused(
            gram_train_cli(&["make-raw", "--out", &d, "--missing", arg]),
            why,
        );
    }
    assert!(!out.exists());
    // A dataset that lists the anchor as missing; a NaN row where nothing may be missing; a
    // partly NaN row where a modality may be.
    let data = tmp.path().join("data");
    synth(&data, &[("audio", 0.3)]);
    let info = data.join("dataset.json");
    let text = std::fs::read_to_string(&info).unwrap();
    let listing = |missing: &[&str]| {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["missing"] = serde_json::json!(missing);
        std::fs::write(&info, v.to_string()).unwrap();
    };
    listing(&["text"]);
    let train = |rule: &str| {
        gram_train_cli(&[
            "fit",
            "--data",
            &o("data"),
            "--out",
            &o("run"),
            "--steps",
            "2",
            "--missing",
            rule,
        ])
    };
    refused(train("present"), "the anchor 'text' cannot be missing");
    listing(&["video"]);
    refused(train("present"), "does not list 'audio' under \"missing\"");
    std::fs::write(&info, &text).unwrap();
    let p = data.join("train_video.npy");
    let (rows, cols) = (256, 16);
    let mut v = gram_host::input::load(&p.to_string_lossy())
        .unwrap()
        .as_slice()
        .to_vec();
    v[5 * cols + 3] = f32::NAN;
    gram_host::output::write_npy_f32(&p, &[rows, cols], &v).unwrap();
    refused(train("present"), "train_video.npy: NaN at row 5");
    assert!(!tmp.path().join("run").exists());
}

#[test]
fn a_raw_dataset_may_omit_a_listed_field_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("raw");
    let d = data.to_string_lossy().into_owned();
    let made = gram_train_cli(&[
        "make-raw",
        "--out",
        &d,
        "--train",
        "24",
        "--val",
        "8",
        "--test",
        "8",
        "--missing",
        "audio=0.25",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let manifest = std::fs::read_to_string(data.join("train.jsonl")).unwrap();
    assert_eq!(
        manifest
            .lines()
            .filter(|l| !l.contains("\"audio\""))
            .count(),
        6
    );
    let run = tmp.path().join("run");
    let r = run.to_string_lossy().into_owned();
    let fit = |rule: &str| {
        gram_train_cli(&[
            "fit",
            "--data",
            &d,
            "--out",
            &r,
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--embed-dim",
            "8",
            "--encoder",
            "text=bert",
            "--encoder",
            "video=clip",
            "--encoder",
            "audio=ast",
            "--missing",
            rule,
        ])
    };
    let o = fit("placeholder");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let emb = tmp.path().join("emb");
    let e = gram_train_cli(&[
        "embed",
        "--checkpoint",
        &r,
        "--data",
        &d,
        "--split",
        "val",
        "--out",
        &emb.to_string_lossy(),
    ]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let val = std::fs::read_to_string(data.join("val.jsonl")).unwrap();
    let want: Vec<usize> = val
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.contains("\"audio\""))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(nan_rows(&emb.join("audio.npy")), want);
    // A field omitted for a modality dataset.json does not list fails naming its line.
    let first = manifest.lines().next().unwrap();
    let cut: serde_json::Value = serde_json::from_str(first).unwrap();
    let mut cut = cut.as_object().unwrap().clone();
    cut.remove("video_frames");
    let rest: String = manifest.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(
        data.join("train.jsonl"),
        format!("{}\n{rest}", serde_json::Value::Object(cut)),
    )
    .unwrap();
    std::fs::remove_dir_all(&run).unwrap();
    refused(
        fit("present"),
        "train.jsonl line 1: no field \"video_frames\"",
    );
}

#[test]
fn a_batch_without_a_complete_sample_still_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 90 % lack audio: most batches of 4 hold no complete sample.
    synth(&data, &[("audio", 0.9)]);
    let cfg = TrainConfig {
        batch_size: 4,
        ..small(MissingRule::Present)
    };
    let s = fit(
        &data,
        &tmp.path().join("run"),
        &cfg,
        FitOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    assert!(s.final_loss.is_finite());
    // A sample lacking every modality but its anchor has nothing to align: refused.
    let both = tmp.path().join("both");
    synth(&both, &[("audio", 0.6), ("video", 0.6)]);
    let e = fit(
        &both,
        &tmp.path().join("r2"),
        &cfg,
        FitOptions::default(),
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("lacks every modality but the anchor"), "{e}");
}
