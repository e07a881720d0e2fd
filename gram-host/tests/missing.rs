//! `--missing RULE`: a row of NaN in a modality file is a missing vector, scored by the rule
//! (gram-host/src/missing.rs); every other NaN is still refused.

mod common;

use common::*;
use std::path::Path;

fn vol(rows: &[&[f32]]) -> f64 {
    gram_nostd::volume(rows).unwrap()
}

fn median(mut x: Vec<f64>) -> f64 {
    x.sort_by(f64::total_cmp);
    let n = x.len();
    if n % 2 == 1 {
        x[n / 2]
    } else {
        0.5 * (x[n / 2 - 1] + x[n / 2])
    }
}

#[test]
fn missing_rows_follow_the_documented_rules() {
    let (n, d) = (40, 6);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let text = pseudo(n * d, 21);
    let video = pseudo(n * d, 22);
    let mut audio = pseudo(n * d, 23);
    let missing = [2usize, 7, 30];
    for &j in &missing {
        audio[j * d..(j + 1) * d].fill(f32::NAN);
    }
    std::fs::write(p("t.npy"), f32_npy(n, d, &text)).unwrap();
    std::fs::write(p("v.npy"), f32_npy(n, d, &video)).unwrap();
    std::fs::write(p("a.npy"), f32_npy(n, d, &audio)).unwrap();
    // `gram <command> --anchor t --modality v --modality a --missing <rule> <rest…>`, which must succeed.
    let run = |command: &str, rule: &str, rest: &[&str]| {
        let (t, v, a) = (p("t.npy"), p("v.npy"), p("a.npy"));
        let mut args = vec![
            command,
            "--anchor",
            &t,
            "--modality",
            &v,
            "--modality",
            &a,
            "--missing",
            rule,
        ];
        args.extend_from_slice(rest);
        let o = gram(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let score = |rule: &str| {
        let out = p(&format!("{rule}.npy"));
        run("score", rule, &["--out", &out]);
        read_npy_f32(Path::new(&out)).1
    };
    let row = |x: &[f32], j: usize| x[j * d..(j + 1) * d].to_vec();
    let (present, scaled, mean) = (score("present"), score("scaled"), score("mean"));
    // The median distance of audio from video's span over complete candidates (c for scaled).
    let c = median(
        (0..n)
            .filter(|j| !missing.contains(j))
            .map(|j| vol(&[&row(&video, j), &row(&audio, j)]) / vol(&[&row(&video, j)]))
            .collect(),
    );
    // The placeholder: the mean present audio row, rescaled to the median present norm.
    let present_rows: Vec<Vec<f32>> = (0..n)
        .filter(|j| !missing.contains(j))
        .map(|j| row(&audio, j))
        .collect();
    let target = median(present_rows.iter().map(|r| vol(&[r])).collect());
    let sum: Vec<f64> = (0..d)
        .map(|c| present_rows.iter().map(|r| r[c] as f64).sum())
        .collect();
    let len = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    let placeholder: Vec<f32> = sum.iter().map(|x| (x / len * target) as f32).collect();
    let close = |got: f32, want: f64, what: &str| {
        assert!(
            (got as f64 - want).abs() <= 2e-5 * want.max(1e-30),
            "{what}: {got} vs {want}"
        );
    };
    for i in 0..n {
        for j in 0..n {
            let (t, v) = (row(&text, i), row(&video, j));
            let at = i * n + j;
            if missing.contains(&j) {
                close(present[at], vol(&[&t, &v]), "present");
                close(scaled[at], c * vol(&[&t, &v]), "scaled");
                close(mean[at], vol(&[&t, &v, &placeholder]), "mean");
            } else {
                let full = vol(&[&t, &v, &row(&audio, j)]);
                for (name, m) in [("present", &present), ("scaled", &scaled), ("mean", &mean)] {
                    close(m[at], full, name);
                }
            }
        }
    }
    // eval and search take the rule too.
    run("eval", "scaled", &["--json"]);
    run("search", "mean", &["--top-k", "3", "--out", &p("hits")]);
}

#[test]
fn other_nan_is_still_refused() {
    let (n, d) = (5, 3);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let ok = pseudo(n * d, 1);
    let mut row_nan = pseudo(n * d, 2);
    row_nan[3..6].fill(f32::NAN);
    let mut one_nan = pseudo(n * d, 3);
    one_nan[4] = f32::NAN;
    let mut all_nan = row_nan.clone();
    all_nan.fill(f32::NAN);
    let mut other_row = pseudo(n * d, 4);
    other_row[3..6].fill(f32::NAN);
    for (name, x) in [
        ("ok", &ok),
        ("row", &row_nan),
        ("one", &one_nan),
        ("all", &all_nan),
        ("other", &other_row),
    ] {
        std::fs::write(p(&format!("{name}.npy")), f32_npy(n, d, x)).unwrap();
    }
    let out = p("v.npy");
    let score = |anchor: &str, mods: &[&str], rule: Option<&str>| {
        let mut a = vec![
            "score".to_string(),
            "--anchor".into(),
            p(anchor),
            "--out".into(),
            out.clone(),
        ];
        for m in mods {
            a.extend(["--modality".to_string(), p(m)]);
        }
        if let Some(r) = rule {
            a.extend(["--missing".to_string(), r.to_string()]);
        }
        a
    };
    let refused = |args: Vec<String>, file: &str, problem: &str| {
        assert_refused(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            Path::new(&out),
            file,
            problem,
        )
    };
    refused(
        score("ok.npy", &["row.npy"], None),
        "row.npy",
        "only with --missing",
    );
    refused(
        score("ok.npy", &["one.npy"], Some("present")),
        "one.npy",
        "a missing vector is a row of NaN only",
    );
    refused(
        score("row.npy", &["ok.npy"], Some("present")),
        "row.npy",
        "NaN at row 1",
    );
    refused(
        score("ok.npy", &["all.npy", "ok.npy"], Some("mean")),
        "all.npy",
        "every row is missing",
    );
    refused(
        score("ok.npy", &["row.npy", "other.npy"], Some("scaled")),
        "row 1 is missing in every modality",
        "at least one vector",
    );
}
