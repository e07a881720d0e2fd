//! The training forward pass against gram-nostd and the reference vectors; gradients against
//! central finite differences in f64.

use candle_core::{DType, Device, Tensor, Var};
use gram_train::losses::gram_loss;
use gram_train::volume::volume_matrix;
use std::path::PathBuf;

fn reference(name: &str) -> (usize, usize, Vec<f32>) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/reference")
        .join(name);
    let bytes = std::fs::read(&p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (
        shape[0] as usize,
        shape[1] as usize,
        npy.into_vec().unwrap(),
    )
}

fn tensor(rows: usize, cols: usize, v: &[f32], dtype: DType) -> Tensor {
    Tensor::from_vec(v.to_vec(), (rows, cols), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

#[test]
fn forward_matches_gram_nostd_on_random_cases() {
    for (case, m) in [
        ("random_k2", 1),
        ("random_k3", 2),
        ("random_k4", 3),
        ("random_k5", 4),
    ] {
        let (n1, d, a) = reference(&format!("{case}_anchor.npy"));
        let mods: Vec<(usize, usize, Vec<f32>)> = (0..m)
            .map(|t| reference(&format!("{case}_mod{t}.npy")))
            .collect();
        for dtype in [DType::F32, DType::F64] {
            let at = tensor(n1, d, &a, dtype);
            let mt: Vec<Tensor> = mods
                .iter()
                .map(|(r, c, v)| tensor(*r, *c, v, dtype))
                .collect();
            let v = volume_matrix(&at, &mt)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec2::<f64>()
                .unwrap();
            for (i, row) in v.iter().enumerate() {
                for (j, &got) in row.iter().enumerate() {
                    let mut t: Vec<&[f32]> = vec![&a[i * d..(i + 1) * d]];
                    t.extend(mods.iter().map(|(_, c, v)| &v[j * c..(j + 1) * c]));
                    let want = gram_nostd::volume(&t).unwrap();
                    assert!(
                        (got - want).abs() <= 1e-5 * want,
                        "{case} {dtype:?} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn loss_matches_the_reference_values_in_f64() {
    let (b, d, a) = reference("loss_anchor.npy");
    let (_, _, m0) = reference("loss_mod0.npy");
    let (_, _, m1) = reference("loss_mod1.npy");
    let v = volume_matrix(
        &tensor(b, d, &a, DType::F64),
        &[tensor(b, d, &m0, DType::F64), tensor(b, d, &m1, DType::F64)],
    )
    .unwrap();
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/reference/loss_expected.json");
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    for (setting, want) in &expected {
        let mut parts = setting
            .split(',')
            .map(|p| p.split('=').nth(1).unwrap().parse::<f64>().unwrap());
        let (tau, ls) = (parts.next().unwrap(), parts.next().unwrap());
        let inv_tau = Tensor::new(1.0 / tau, &Device::Cpu).unwrap();
        let got = gram_loss(&v, &inv_tau, ls)
            .unwrap()
            .loss
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            (got - want.as_f64().unwrap()).abs() <= 1e-6,
            "{setting}: {got} vs {want}"
        );
    }
}

/// Deterministic pseudo-random f64 values in (−0.5, 0.5); distinct odd seeds give distinct streams.
fn values(n: usize, seed: u64) -> Vec<f64> {
    gram_nostd::uniform::Uniform::new(seed).take(n).collect()
}

/// Worst relative error of ∂(Σ_ij w_ij V_ij)/∂inputs against central differences.
fn gradient_check(anchor: Vec<f64>, mods: Vec<Vec<f64>>, b: usize, d: usize) -> f64 {
    let dev = Device::Cpu;
    let w = Tensor::from_vec(values(b * b, 99), (b, b), &dev).unwrap();
    let objective = |a: &Tensor, m: &[Tensor]| -> Tensor {
        volume_matrix(a, m)
            .unwrap()
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let av = Var::from_vec(anchor.clone(), (b, d), &dev).unwrap();
    let mv: Vec<Var> = mods
        .iter()
        .map(|m| Var::from_vec(m.clone(), (b, d), &dev).unwrap())
        .collect();
    let mt: Vec<Tensor> = mv.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = objective(av.as_tensor(), &mt).backward().unwrap();
    let mut inputs = vec![(
        anchor,
        grads
            .get(av.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap(),
    )];
    for (m, v) in mods.iter().zip(&mv) {
        inputs.push((
            m.clone(),
            grads
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
        ));
    }
    let mut worst = 0.0f64;
    let h = 1e-6;
    for which in 0..inputs.len() {
        for idx in 0..b * d {
            let eval = |delta: f64| -> f64 {
                let mut all: Vec<Vec<f64>> = inputs.iter().map(|x| x.0.clone()).collect();
                all[which][idx] += delta;
                let a = Tensor::from_vec(all[0].clone(), (b, d), &dev).unwrap();
                let m: Vec<Tensor> = all[1..]
                    .iter()
                    .map(|x| Tensor::from_vec(x.clone(), (b, d), &dev).unwrap())
                    .collect();
                objective(&a, &m).to_scalar::<f64>().unwrap()
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            let an = inputs[which].1[idx];
            let scale = fd.abs().max(an.abs()).max(1e-3);
            worst = worst.max((fd - an).abs() / scale);
        }
    }
    worst
}

#[test]
fn gradients_match_finite_differences_on_random_tuples() {
    let (b, d) = (3, 6);
    let worst = gradient_check(
        values(b * d, 11),
        vec![values(b * d, 21), values(b * d, 31)],
        b,
        d,
    );
    assert!(worst <= 1e-4, "worst relative error {worst:e}");
    println!("random: worst relative gradient error {worst:e}");
}

#[test]
fn gradients_match_finite_differences_on_near_collinear_tuples() {
    // Every modality = anchor + 1e-3·noise: volumes ~1e-6, the regime of trained positives.
    let (b, d) = (3, 6);
    let a = values(b * d, 41);
    let near = |seed| {
        a.iter()
            .zip(values(b * d, seed))
            .map(|(x, e)| x + 1e-3 * e)
            .collect::<Vec<_>>()
    };
    let worst = gradient_check(a.clone(), vec![near(51), near(61)], b, d);
    assert!(worst <= 1e-4, "worst relative error {worst:e}");
    println!("near-collinear: worst relative gradient error {worst:e}");
}

#[test]
fn exactly_collinear_and_duplicated_tuples_give_finite_gradients() {
    let dev = Device::Cpu;
    let a = Var::from_vec(vec![0.3f64, -0.2, 0.9, 0.1], (1, 4), &dev).unwrap();
    let dup = Var::from_vec(vec![0.3f64, -0.2, 0.9, 0.1], (1, 4), &dev).unwrap();
    let scaled = Var::from_vec(vec![0.6f64, -0.4, 1.8, 0.2], (1, 4), &dev).unwrap();
    let v = volume_matrix(
        a.as_tensor(),
        &[dup.as_tensor().clone(), scaled.as_tensor().clone()],
    )
    .unwrap();
    assert_eq!(v.to_vec2::<f64>().unwrap()[0][0], 0.0);
    let grads = v.sum_all().unwrap().backward().unwrap();
    for var in [&a, &dup, &scaled] {
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    }
}
