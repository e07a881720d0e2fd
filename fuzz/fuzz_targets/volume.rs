//! gram-nostd on arbitrary f32 bit patterns, dimensions and k: volume, log_volume, the
//! candidate fast path (score_row) and the loss. Invariants: no panic; finite input → finite,
//! non-negative volume ≤ Hadamard's bound (or OutOfRange when it exceeds f64, then
//! log_volume says so); non-finite input → NonFinite; score_row agrees with volume.
#![no_main]

use gram_nostd::{GramError, candidate_at, gram_loss, log_volume, score_row, volume};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let k = 1 + (data[0] as usize % 16);
    let values: Vec<f32> = data[1..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let n = values.len() / k;
    if n == 0 {
        return;
    }
    let vectors: Vec<&[f32]> = (0..k).map(|i| &values[i * n..(i + 1) * n]).collect();
    let finite = vectors.iter().all(|v| v.iter().all(|x| x.is_finite()));
    let v = volume(&vectors);
    let lv = log_volume(&vectors);
    if !finite {
        assert_eq!(v, Err(GramError::NonFinite));
        assert_eq!(lv, Err(GramError::NonFinite));
        return;
    }
    let lv = lv.expect("finite input has a log-volume");
    assert!(!lv.is_nan() && lv != f64::INFINITY, "log_volume {lv}");
    // Hadamard's bound in the log domain (norms of f32 vectors fit f64).
    let log_bound: f64 = vectors
        .iter()
        .map(|v| 0.5 * v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().ln())
        .sum();
    assert!(
        lv <= log_bound + 1e-9,
        "log volume {lv} above Hadamard's bound {log_bound}"
    );
    match v {
        Ok(v) => {
            assert!(v.is_finite() && v >= 0.0, "volume {v}");
            // In f64's subnormal range the result keeps fewer digits (log_volume keeps them).
            assert!(!v.is_normal() || (v.ln() - lv).abs() <= 1e-9 * lv.abs().max(1.0));
        }
        Err(GramError::OutOfRange) => assert!(lv > 700.0),
        Err(e) => panic!("unexpected {e:?}"),
    }
    // The scoring kernel on the same tuple (k ≥ 2): anchor = first vector, one candidate.
    if k >= 2 {
        let mods: Vec<&[f32]> = vectors[1..].to_vec();
        let cand = candidate_at(&mods, n, 0).expect("finite candidate");
        let mut out = [0.0f32];
        match score_row(vectors[0], &mods, &[cand], &mut out) {
            Ok(_) => {
                let exact = volume(&vectors).expect("fits f32, so fits f64");
                let got = out[0] as f64;
                assert!(got >= 0.0 && got.is_finite());
                assert!(
                    (got - exact).abs() <= 1e-6 * exact + f32::MIN_POSITIVE as f64,
                    "score {got} vs volume {exact}"
                );
            }
            Err(GramError::OutOfRange) => assert!(lv > (f32::MAX as f64).ln() - 1e-6),
            Err(e) => panic!("score_row: unexpected {e:?}"),
        }
    }
    // The loss over |values| (the checked, finite ones) read as a square volume matrix.
    let pool = &values[..k * n];
    let b = (pool.len() as f64).sqrt() as usize;
    if b >= 1 {
        let vols: Vec<f64> = pool[..b * b].iter().map(|x| (*x as f64).abs()).collect();
        let mut grad = vec![0.0; b * b];
        let tau = 0.01 + (data[0] as f64) / 64.0;
        let l = gram_loss(&vols, b, tau, 0.1, Some(&mut grad)).expect("finite volumes");
        assert!(
            l.loss.is_finite() || vols.iter().any(|v| *v / tau > 1e300),
            "loss {l:?}"
        );
        assert!(grad.iter().all(|g| !g.is_nan()));
    }
});
