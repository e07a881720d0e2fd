//! The real `gram` binary: contracts of DESIGN.md, accuracy through the binary on every
//! reference case, and bad input → one `error:` line naming the file, exit 2, no output.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn reference(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/reference")
        .join(name);
    p.to_str().unwrap().to_string()
}

fn read_npy_f64(p: &str) -> (Vec<u64>, Vec<f64>) {
    let bytes = std::fs::read(p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec().unwrap())
}

#[test]
fn score_meets_the_accuracy_contract_on_every_reference_case() {
    let index: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(reference("index.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, m) in &index {
        let out = dir.path().join(format!("{name}.npy"));
        let anchor = reference(&format!("{name}_anchor.npy"));
        let mut args = vec!["score".to_string(), "--anchor".into(), anchor];
        for t in 0..m.as_u64().unwrap() {
            args.push("--modality".into());
            args.push(reference(&format!("{name}_mod{t}.npy")));
        }
        args.push("--out".into());
        args.push(out.to_str().unwrap().into());
        let o = gram(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (shape, got) = read_npy_f32(&out);
        let (eshape, exact) = read_npy_f64(&reference(&format!("{name}_exact.npy")));
        assert_eq!(shape, eshape);
        let tol = if name == "near_collinear_0.0001" || name == "near_collinear_1e-05" {
            1e-3
        } else {
            1e-5
        };
        for (g, e) in got.iter().zip(&exact) {
            let g = *g as f64;
            if *e == 0.0 {
                assert!(g.abs() <= 1e-6, "{name}: {g} for exact 0");
            } else {
                assert!((g - e).abs() <= tol * e, "{name}: {g} vs {e}");
            }
        }
    }
}

#[test]
fn loss_matches_the_reference_values_through_the_binary() {
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(reference("loss_expected.json")).unwrap()).unwrap();
    for (setting, want) in &expected {
        let mut parts = setting.split(',').map(|p| p.split('=').nth(1).unwrap());
        let (tau, ls) = (parts.next().unwrap(), parts.next().unwrap());
        let o = gram(&[
            "loss",
            "--anchor",
            &reference("loss_anchor.npy"),
            "--modality",
            &reference("loss_mod0.npy"),
            "--modality",
            &reference("loss_mod1.npy"),
            "--temperature",
            tau,
            "--label-smoothing",
            ls,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let got = v["loss"].as_f64().unwrap();
        assert!(
            (got - want.as_f64().unwrap()).abs() <= 1e-6,
            "{setting}: {got} vs {want}"
        );
        let mean =
            0.5 * (v["anchor_to_data"].as_f64().unwrap() + v["data_to_anchor"].as_f64().unwrap());
        assert!((mean - got).abs() < 1e-12);
    }
}

#[test]
fn eval_json_on_a_hand_computed_case() {
    // d = 2, k = 2: vol(a, m) = |a × m|. Anchor i = candidate i for i = 0, 1; anchor 2 = (1, 0)
    // matches candidate 0 (vol 0) better than its own candidate (1,1) (vol 1), and ties with
    // candidate 1 = (0,1) (vol 1): rank 3 of 3 (ties count against the truth).
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.npy");
    let m = dir.path().join("m.npy");
    std::fs::write(&a, f32_npy(3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0])).unwrap();
    std::fs::write(&m, f32_npy(3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0])).unwrap();
    let o = gram(&[
        "eval",
        "--anchor",
        a.to_str().unwrap(),
        "--modality",
        m.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // anchor→data ranks: [2 (tie with anchor 2's... no: row 0 = (0, 1, 1)) → 1, row 1 = (1, 0, 1) → 1, row 2 = (0, 1, 1) → 3]
    let a2d = &v["anchor_to_data"];
    assert!((a2d["r1"].as_f64().unwrap() - 200.0 / 3.0).abs() < 1e-9);
    assert_eq!(a2d["r5"].as_f64().unwrap(), 100.0);
    assert_eq!(a2d["medr"].as_f64().unwrap(), 1.0);
    assert!((a2d["meanr"].as_f64().unwrap() - 5.0 / 3.0).abs() < 1e-9);
    // data→anchor: column 0 = (0, 1, 0): truth 0, anchor 2 ties → rank 2; column 1 = (1, 0, 1) → 1;
    // column 2 = (1, 1, 1): every other anchor ties → rank 3.
    let d2a = &v["data_to_anchor"];
    assert!((d2a["r1"].as_f64().unwrap() - 100.0 / 3.0).abs() < 1e-9);
    assert_eq!(d2a["medr"].as_f64().unwrap(), 2.0);
    assert_eq!(d2a["meanr"].as_f64().unwrap(), 2.0);
    for key in ["r1", "r5", "r10", "medr", "meanr"] {
        assert!(v["data_to_anchor"][key].is_number(), "{key}");
    }
}

#[test]
fn other_input_formats_give_the_same_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let (n, d) = (5, 8);
    let a = pseudo(n * d, 11);
    let m = pseudo(n * d, 12);
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(p("a.npy"), f32_npy(n, d, &a)).unwrap();
    std::fs::write(p("m.npy"), f32_npy(n, d, &m)).unwrap();
    // float64, big-endian float32, float16-exact values, safetensors.
    let a64: Vec<u8> = a.iter().flat_map(|v| (*v as f64).to_le_bytes()).collect();
    std::fs::write(
        p("a64.npy"),
        npy_bytes("<f8", false, &format!("({n}, {d})"), &a64),
    )
    .unwrap();
    let abe: Vec<u8> = a.iter().flat_map(|v| v.to_be_bytes()).collect();
    std::fs::write(
        p("abe.npy"),
        npy_bytes(">f4", false, &format!("({n}, {d})"), &abe),
    )
    .unwrap();
    let m_bytes: Vec<u8> = m.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n, d], &m_bytes)
        .unwrap();
    safetensors::serialize_to_file([("video", view)], None, Path::new(&p("m.safetensors")))
        .unwrap();

    let run = |anchor: &str, modality: &str, out: &str| {
        let o = gram(&[
            "score",
            "--anchor",
            anchor,
            "--modality",
            modality,
            "--out",
            out,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read_npy_f32(Path::new(out)).1
    };
    let base = run(&p("a.npy"), &p("m.npy"), &p("v0.npy"));
    assert_eq!(run(&p("a64.npy"), &p("m.npy"), &p("v1.npy")), base);
    assert_eq!(run(&p("abe.npy"), &p("m.npy"), &p("v2.npy")), base);
    assert_eq!(
        run(
            &p("a.npy"),
            &format!("{}:video", p("m.safetensors")),
            &p("v3.npy")
        ),
        base
    );

    let h: Vec<u8> = [0.5f32, -1.0, 2.0, 0.25]
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    std::fs::write(p("h.npy"), npy_bytes("<f2", false, "(2, 2)", &h)).unwrap();
    std::fs::write(p("h32.npy"), f32_npy(2, 2, &[0.5, -1.0, 2.0, 0.25])).unwrap();
    std::fs::write(p("e.npy"), f32_npy(2, 2, &[1.0, 0.0, 0.0, 1.0])).unwrap();
    assert_eq!(
        run(&p("h.npy"), &p("e.npy"), &p("v4.npy")),
        run(&p("h32.npy"), &p("e.npy"), &p("v5.npy"))
    );
}
#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let good = f32_npy(3, 4, &pseudo(12, 1));
    std::fs::write(p("good.npy"), &good).unwrap();
    std::fs::write(p("good2.npy"), f32_npy(3, 4, &pseudo(12, 2))).unwrap();
    std::fs::write(p("truncated.npy"), &good[..good.len() - 5]).unwrap();
    std::fs::write(p("text.npy"), "this is not a numpy file\n").unwrap();
    std::fs::write(
        p("int64.npy"),
        npy_bytes("<i8", false, "(3, 4)", &[0u8; 96]),
    )
    .unwrap();
    std::fs::write(p("oned.npy"), npy_bytes("<f4", false, "(12,)", &[0u8; 48])).unwrap();
    std::fs::write(p("wide.npy"), f32_npy(3, 5, &pseudo(15, 3))).unwrap();
    std::fs::write(p("rows.npy"), f32_npy(4, 4, &pseudo(16, 4))).unwrap();
    let mut nan = pseudo(12, 5);
    nan[6] = f32::NAN;
    std::fs::write(p("nan.npy"), f32_npy(3, 4, &nan)).unwrap();
    let mut inf = pseudo(12, 6);
    inf[9] = f32::INFINITY;
    std::fs::write(p("inf.npy"), f32_npy(3, 4, &inf)).unwrap();
    std::fs::write(p("empty.npy"), npy_bytes("<f4", false, "(0, 4)", &[])).unwrap();
    std::fs::write(
        p("fortran.npy"),
        npy_bytes("<f4", true, "(3, 4)", &good[128..]),
    )
    .unwrap();
    let bytes: Vec<u8> = pseudo(12, 7).iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 4], &bytes).unwrap();
    safetensors::serialize_to_file([("audio", view)], None, Path::new(&p("t.safetensors")))
        .unwrap();

    let out = dir.path().join("out.npy");
    let o = out.to_str().unwrap();
    let score = |anchor: &str, modality: &str| {
        vec![
            "score",
            "--anchor",
            anchor,
            "--modality",
            modality,
            "--out",
            o,
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, String, &str)> = vec![
        (
            score(&p("missing.npy"), &p("good.npy")),
            p("missing.npy"),
            "cannot open",
        ),
        (
            score(&p("truncated.npy"), &p("good.npy")),
            p("truncated.npy"),
            "truncated",
        ),
        (
            score(&p("good.npy"), &p("text.npy")),
            p("text.npy"),
            "not a valid .npy",
        ),
        (
            score(&p("int64.npy"), &p("good.npy")),
            p("int64.npy"),
            "unsupported dtype",
        ),
        (score(&p("oned.npy"), &p("good.npy")), p("oned.npy"), "2-D"),
        (
            score(&p("good.npy"), &p("wide.npy")),
            p("wide.npy"),
            "dimension",
        ),
        (
            score(&p("nan.npy"), &p("good.npy")),
            p("nan.npy"),
            "NaN at row 1",
        ),
        (
            score(&p("good.npy"), &p("inf.npy")),
            p("inf.npy"),
            "infinity at row 2",
        ),
        (
            score(&p("empty.npy"), &p("good.npy")),
            p("empty.npy"),
            "empty",
        ),
        (
            score(&p("fortran.npy"), &p("good.npy")),
            p("fortran.npy"),
            "Fortran",
        ),
        (
            score(&p("good.npy"), &format!("{}:video", p("t.safetensors"))),
            p("t.safetensors"),
            "no tensor named 'video'",
        ),
    ];
    for (args, file, problem) in &cases {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        assert_refused(&args, &out, file, problem);
    }
    // N2 mismatch between modalities.
    assert_refused(
        &[
            "score",
            "--anchor",
            &p("good.npy"),
            "--modality",
            &p("good2.npy"),
            "--modality",
            &p("rows.npy"),
            "--out",
            o,
        ],
        &out,
        &p("rows.npy"),
        "rows",
    );
    // No modality at all (clap's own error, same contract).
    assert_refused(
        &["score", "--anchor", &p("good.npy"), "--out", o],
        &out,
        "--modality",
        "required",
    );
    // Eval needs a square problem.
    assert_refused(
        &[
            "eval",
            "--anchor",
            &p("rows.npy"),
            "--modality",
            &p("good.npy"),
        ],
        &out,
        &p("rows.npy"),
        "rows",
    );
    // A volume beyond float32 found while the matrix is being written: the file the tiles
    // went to is removed.
    let huge: Vec<f32> = pseudo(12, 8).iter().map(|x| x * 1e30).collect();
    std::fs::write(p("huge.npy"), f32_npy(3, 4, &huge)).unwrap();
    let huge2: Vec<f32> = pseudo(12, 9).iter().map(|x| x * 1e30).collect();
    std::fs::write(p("huge2.npy"), f32_npy(3, 4, &huge2)).unwrap();
    assert_refused(
        &score(&p("huge.npy"), &p("huge2.npy"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &out,
        &p("huge.npy"),
        "float32 range",
    );
    // An output directory that does not exist.
    let nowhere = dir.path().join("no/such/dir/v.npy");
    let o2 = gram(&[
        "score",
        "--anchor",
        &p("good.npy"),
        "--modality",
        &p("good2.npy"),
        "--out",
        nowhere.to_str().unwrap(),
    ]);
    assert_eq!(o2.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o2.stderr).starts_with("error:"));
}

#[test]
fn search_top_k_matches_the_full_matrix_on_cpu_and_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (n1, n2, d, k) = (9, 70, 12, 5);
    let a = pseudo(n1 * d, 21);
    let mut m0 = pseudo(n2 * d, 22);
    let mut m1 = pseudo(n2 * d, 23);
    // Candidates 30..33 duplicate candidate 2: exact ties, broken by index.
    for j in 30..33 {
        m0.copy_within(2 * d..3 * d, j * d);
        m1.copy_within(2 * d..3 * d, j * d);
    }
    std::fs::write(p("a.npy"), f32_npy(n1, d, &a)).unwrap();
    std::fs::write(p("m0.npy"), f32_npy(n2, d, &m0)).unwrap();
    std::fs::write(p("m1.npy"), f32_npy(n2, d, &m1)).unwrap();
    let base = [
        "--anchor",
        &p("a.npy"),
        "--modality",
        &p("m0.npy"),
        "--modality",
        &p("m1.npy"),
    ];
    let o = gram(&[&["score"][..], &base, &["--out", &p("v.npy")]].concat());
    assert!(o.status.success());
    let (_, v) = read_npy_f32(Path::new(&p("v.npy")));
    assert!(v.iter().all(|&x| x > 0.0), "degenerate test data");
    let ks = k.to_string();
    for backend in ["cpu", "gpu"] {
        let out = p(&format!("hits-{backend}"));
        let args = [
            &["search"][..],
            &base,
            &["--top-k", &ks, "--out", &out, "--backend", backend],
        ]
        .concat();
        let Some(o) = (if backend == "gpu" {
            gram_gpu(&args)
        } else {
            Some(gram(&args))
        }) else {
            continue;
        };
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (shape, idx) = read_npy_u32(&Path::new(&out).join("indices.npy"));
        let (_, vol) = read_npy_f32(&Path::new(&out).join("volumes.npy"));
        assert_eq!(shape, vec![n1 as u64, k as u64]);
        for i in 0..n1 {
            let row = &v[i * n2..(i + 1) * n2];
            let mut order: Vec<u32> = (0..n2 as u32).collect();
            order.sort_by(|&x, &y| row[x as usize].total_cmp(&row[y as usize]).then(x.cmp(&y)));
            assert_eq!(
                &idx[i * k..(i + 1) * k],
                &order[..k],
                "{backend} anchor {i}"
            );
            for t in 0..k {
                let want = row[idx[i * k + t] as usize];
                assert!(
                    (vol[i * k + t] - want).abs() <= 1e-6 * want,
                    "{backend}: {} vs {want}",
                    vol[i * k + t]
                );
            }
        }
    }
    let o = gram(&[&["search"][..], &base, &["--top-k", "0", "--out", &p("x")]].concat());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn score_backend_gpu_meets_the_gpu_contract() {
    let dir = tempfile::tempdir().unwrap();
    for (name, tol) in [
        ("random_k4", 1e-4),
        ("scale_1e+12", 1e-4),
        ("near_collinear_0.0001", 1e-2),
    ] {
        let out = dir.path().join(format!("{name}.npy"));
        let mut args = vec![
            "score".to_string(),
            "--backend".into(),
            "gpu".into(),
            "--anchor".into(),
            reference(&format!("{name}_anchor.npy")),
        ];
        let m = if name == "random_k4" { 3 } else { 2 };
        for t in 0..m {
            args.push("--modality".into());
            args.push(reference(&format!("{name}_mod{t}.npy")));
        }
        args.push("--out".into());
        args.push(out.to_str().unwrap().into());
        let Some(o) = gram_gpu(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>()) else {
            return;
        };
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (_, got) = read_npy_f32(&out);
        let (_, exact) = read_npy_f64(&reference(&format!("{name}_exact.npy")));
        for (g, e) in got.iter().zip(&exact) {
            assert!((*g as f64 - e).abs() <= tol * e, "{name}: {g} vs {e}");
        }
    }
}

#[test]
fn eval_tie_rules_on_hand_made_ties() {
    // Anchors and candidates (e1, e1, e2): V = [[0, 0, 1], [0, 0, 1], [1, 1, 0]], so pairs 0 and 1
    // tie. Ranks both ways: pessimistic (2, 2, 1), optimistic (1, 1, 1), stable (1, 2, 1).
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    std::fs::write(&x, f32_npy(3, 2, &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0])).unwrap();
    let x = x.to_str().unwrap();
    for (ties, r1, meanr) in [
        ("pessimistic", 100.0 / 3.0, 5.0 / 3.0),
        ("optimistic", 100.0, 1.0),
        ("stable", 200.0 / 3.0, 4.0 / 3.0),
    ] {
        let o = gram(&[
            "eval",
            "--anchor",
            x,
            "--modality",
            x,
            "--ties",
            ties,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for dir in ["anchor_to_data", "data_to_anchor"] {
            assert!(
                (v[dir]["r1"].as_f64().unwrap() - r1).abs() < 1e-9,
                "{ties} {v}"
            );
            assert!(
                (v[dir]["meanr"].as_f64().unwrap() - meanr).abs() < 1e-9,
                "{ties} {v}"
            );
        }
    }
    let o = gram(&["eval", "--anchor", x, "--modality", x, "--ties", "random"]);
    assert_eq!(o.status.code(), Some(2));
}
