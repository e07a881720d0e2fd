//! `gram report` end to end: the files it writes, its summary against `gram eval`, snapshots,
//! and every refusal (exit 2, one `error:` line, no report left behind).

use std::path::Path;
use std::process::{Command, Output};

fn gram(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gram"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A unit-row [n, d] f32 .npy: a shared signal `z` plus `noise` times private noise.
fn write_set(path: &Path, n: usize, d: usize, noise: f64, seed: u64) {
    let z = gram_nostd::uniform::Uniform::new(1)
        .take(n * d)
        .collect::<Vec<f64>>();
    let e = gram_nostd::uniform::Uniform::new(seed)
        .take(n * d)
        .collect::<Vec<f64>>();
    let mut v: Vec<f32> = z
        .iter()
        .zip(&e)
        .map(|(a, b)| ((a - 0.5) + noise * (b - 0.5)) as f32)
        .collect();
    for row in v.chunks_exact_mut(d) {
        let s = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= s);
    }
    let mut h = gram_host::output::npy_header_f32(&[n, d]);
    h.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::write(path, h).unwrap();
}

/// No staging directory (`.OUT.partial-PID`) is left in `dir`.
fn assert_no_staging(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter()
            .all(|f| !f.to_string_lossy().contains("partial")),
        "{left:?}"
    );
}

fn one_error_line(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert!(err.starts_with("error: ") && !err.contains('\n'), "{err}");
    err
}

#[test]
fn report_of_a_feature_set_writes_every_plot_and_agrees_with_eval() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for (name, noise, seed) in [("text", 0.6, 2), ("video", 0.9, 3), ("audio", 1.2, 4)] {
        write_set(&p.join(format!("{name}.npy")), 300, 24, noise, seed);
    }
    let args = [
        "--anchor",
        "text.npy",
        "--modality",
        "video.npy",
        "--modality",
        "audio.npy",
    ];
    let o = gram(
        &[
            &["report"],
            &args[..],
            &["--out", "rep", "--json", "--sample", "200"],
        ]
        .concat(),
        p,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let eval = gram(&[&["eval"], &args[..], &["--json"]].concat(), p);
    let eval: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(
        summary["retrieval"], eval,
        "metrics on every row equal `gram eval`"
    );
    assert_eq!(
        summary["modalities"],
        serde_json::json!(["text", "video", "audio"])
    );
    assert_eq!(summary["sampled_rows"], 200);
    let auc = summary["separation_auc"].as_f64().unwrap();
    assert!(auc > 0.9 && auc <= 1.0, "{auc}");
    let pairs = summary["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 3);
    for pair in pairs {
        let knn = pair["mutual_knn"].as_f64().unwrap();
        assert!(knn > 10.0 / 199.0 && knn <= 1.0, "{pair}");
    }
    for plot in ["volumes", "ranks", "cosine_volume", "map"] {
        for ext in ["png", "svg"] {
            let f = p.join(format!("rep/{plot}.{ext}"));
            assert!(
                std::fs::metadata(&f).unwrap().len() > 1000,
                "{}",
                f.display()
            );
        }
    }
    let png = std::fs::read(p.join("rep/volumes.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let html = std::fs::read_to_string(p.join("rep/report.html")).unwrap();
    assert_eq!(html.matches("<figure").count(), 4);
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(
        !html.contains("<?xml")
            && !html.contains("<script")
            && !html.contains("http://www.w3.org/1999/xhtml\"")
    );
    // A second run replaces the previous report; no staging directory is left.
    let o = gram(
        &[
            &["report"],
            &args[..],
            &["--out", "rep", "--names", "t,v,a"],
        ]
        .concat(),
        p,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("t-v: mutual k-NN"));
    assert_no_staging(p);
}

#[test]
fn report_over_snapshots_draws_curves_and_first_and_last_maps() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("snaps")).unwrap();
    for (step, noise) in [(0, 3.0), (50, 1.0), (100, 0.3)] {
        for (m, seed) in [("text", 10), ("audio", 20)] {
            write_set(
                &p.join(format!("snaps/{step}_{m}.npy")),
                120,
                16,
                noise,
                seed + step,
            );
        }
    }
    std::fs::write(p.join("snaps/notes.txt"), "ignored").unwrap();
    let o = gram(
        &["report", "--snapshots", "snaps", "--out", "rep", "--json"],
        p,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let steps: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| s["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 50, 100]
    );
    // The default anchor is `text`; alignment grows as the noise falls.
    assert_eq!(steps[0]["modalities"], serde_json::json!(["text", "audio"]));
    let r1 = |s: &serde_json::Value| s["retrieval"]["anchor_to_data"]["r1"].as_f64().unwrap();
    assert!(r1(&steps[0]) < r1(&steps[2]), "{steps:?}");
    for f in [
        "curves.png",
        "curves.svg",
        "step0_map.png",
        "step100_map.svg",
        "step100_volumes.png",
    ] {
        assert!(p.join("rep").join(f).is_file(), "{f}");
    }
    let o = gram(
        &[
            "report",
            "--snapshots",
            "snaps",
            "--anchor-modality",
            "audio",
            "--out",
            "rep2",
            "--json",
        ],
        p,
    );
    let steps: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(steps[0]["modalities"], serde_json::json!(["audio", "text"]));
}

#[test]
fn bad_report_requests_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    write_set(&p.join("a.npy"), 40, 8, 0.5, 2);
    write_set(&p.join("m.npy"), 40, 8, 0.5, 3);
    write_set(&p.join("short.npy"), 30, 8, 0.5, 3);
    std::fs::create_dir(p.join("snaps")).unwrap();
    std::fs::create_dir(p.join("empty")).unwrap();
    write_set(&p.join("snaps/0_text.npy"), 40, 8, 0.5, 2);
    write_set(&p.join("snaps/0_audio.npy"), 40, 8, 0.5, 3);
    write_set(&p.join("snaps/10_text.npy"), 40, 8, 0.5, 2);
    std::fs::create_dir(p.join("data")).unwrap();
    std::fs::write(p.join("data/keep.txt"), "user data").unwrap();
    let cases: [(&[&str], &str); 8] = [
        (
            &["--anchor", "a.npy", "--modality", "short.npy"],
            "a.npy: 40 rows, but the modalities have 30",
        ),
        (
            &["--anchor", "a.npy", "--modality", "missing.npy"],
            "missing.npy: cannot open",
        ),
        (
            &["--anchor", "a.npy", "--modality", "m.npy", "--names", "x"],
            "--names: 1 names for 2",
        ),
        (&["--snapshots", "empty"], "empty: no snapshot files"),
        (&["--snapshots", "snaps"], "step 10 has modalities"),
        (&["--snapshots", "nope"], "nope: "),
        (
            &["--anchor", "a.npy", "--modality", "m.npy", "--sample", "5"],
            "--sample",
        ),
        (
            &[
                "--anchor",
                "a.npy",
                "--modality",
                "m.npy",
                "--snapshots",
                "snaps",
            ],
            "cannot be used with",
        ),
    ];
    for (args, want) in cases {
        let o = gram(&[&["report"], args, &["--out", "rep"]].concat(), p);
        let err = one_error_line(&o);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!p.join("rep").exists(), "{args:?} left a report");
    }
    // An existing directory that is not a report is never replaced.
    let o = gram(
        &[
            "report",
            "--anchor",
            "a.npy",
            "--modality",
            "m.npy",
            "--out",
            "data",
        ],
        p,
    );
    assert!(one_error_line(&o).contains("data: exists and is not a gram report"));
    assert!(p.join("data/keep.txt").is_file());
    assert_no_staging(p);
}
