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
    // eval and search take the rule too; report says how many rows each modality misses.
    run("eval", "scaled", &["--json"]);
    run("search", "mean", &["--top-k", "3", "--out", &p("hits")]);
    let (t, v, a, out) = (p("t.npy"), p("v.npy"), p("a.npy"), p("report"));
    let args = ["report", "--anchor", &t, "--modality", &v, "--modality", &a];
    let o = gram(
        &[
            &args[..],
            &[
                "--missing",
                "present",
                "--sample",
                "20",
                "--out",
                &out,
                "--json",
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["missing_rows"], serde_json::json!({"v": 0, "a": 3}));
    let page = std::fs::read_to_string(Path::new(&out).join("report.html")).unwrap();
    assert!(
        page.contains("v 0 of 40, a 3 of 40"),
        "the page names the missing rows"
    );
    let o = gram(&[&args[..], &["--out", &p("r2")]].concat());
    assert_eq!(
        o.status.code(),
        Some(2),
        "without --missing a NaN row is refused"
    );
}

#[test]
fn present_scores_a_candidate_lacking_several_modalities_by_the_vectors_present() {
    let (n, d) = (6, 5);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let x: Vec<Vec<f32>> = (0..4).map(|t| pseudo(n * d, 40 + t)).collect();
    let mut m = x.clone();
    // Candidate 1 lacks modalities 2 and 3; candidate 4 lacks 1 and 3.
    for (t, j) in [(2, 1), (3, 1), (1, 4), (3, 4)] {
        m[t][j * d..(j + 1) * d].fill(f32::NAN);
    }
    for (t, v) in m.iter().enumerate() {
        std::fs::write(p(&format!("{t}.npy")), f32_npy(n, d, v)).unwrap();
    }
    let (a, m1, m2, m3, out) = (p("0.npy"), p("1.npy"), p("2.npy"), p("3.npy"), p("v.npy"));
    let o = gram(&[
        "score",
        "--anchor",
        &a,
        "--modality",
        &m1,
        "--modality",
        &m2,
        "--modality",
        &m3,
        "--missing",
        "present",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = read_npy_f32(Path::new(&out)).1;
    let row = |t: usize, j: usize| x[t][j * d..(j + 1) * d].to_vec();
    for i in 0..n {
        let a = row(0, i);
        for (j, present) in [(1, vec![1]), (4, vec![2])] {
            let mut tuple: Vec<Vec<f32>> = vec![a.clone()];
            tuple.extend(present.iter().map(|&t| row(t, j)));
            let refs: Vec<&[f32]> = tuple.iter().map(Vec::as_slice).collect();
            let want = vol(&refs);
            let got = v[i * n + j] as f64;
            assert!(
                (got - want).abs() <= 2e-5 * want,
                "({i}, {j}): {got} vs {want}"
            );
        }
    }
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
