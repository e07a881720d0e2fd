//! Prints the accuracy table of the README: gram-nostd's exact path and score path vs. the
//! published float32 Gram-det recipe on every reference case (testdata/reference).
//! Run: `cargo run -p gram-nostd --example reference_table`

#[path = "../tests/support/reference.rs"]
mod reference;

use gram_nostd::{candidate_at, naive, score_row, volume};

fn fmt(e: f64) -> String {
    if e.is_nan() {
        "NaN".into()
    } else if e.is_infinite() {
        "inf".into()
    } else {
        format!("{e:.1e}")
    }
}

fn main() {
    println!("| case | k | pairs | exact path | score_row (f32 out) | f32 Gram-det recipe |");
    println!("|---|---|---|---|---|---|");
    for case in reference::cases() {
        let (n1, n2) = (case.exact.rows, case.exact.cols);
        let n = case.anchor.cols;
        let mods: Vec<&[f32]> = case.modalities.iter().map(|m| m.data.as_slice()).collect();
        let cands: Vec<_> = (0..n2)
            .map(|j| candidate_at(&mods, n, j).unwrap())
            .collect();
        let mut row = vec![0.0f32; n2];
        let (mut ours, mut scored, mut naive_err) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n1 {
            score_row(case.anchor.row(i), &mods, &cands, &mut row).unwrap();
            for j in 0..n2 {
                let exact = case.exact.data[i * n2 + j];
                let t = case.tuple(i, j);
                ours = ours.max(reference::error(volume(&t).unwrap(), exact));
                scored = scored.max(reference::error(row[j] as f64, exact));
                let nv = naive::volume_f32(&t) as f64;
                // NaN/inf poison the maximum on purpose.
                let e = reference::error(nv, exact);
                naive_err = if e.is_nan() || naive_err.is_nan() {
                    f64::NAN
                } else {
                    naive_err.max(e)
                };
            }
        }
        let kind = if case.exact.data.iter().all(|&x| x == 0.0) {
            "abs"
        } else {
            "rel"
        };
        println!(
            "| {} | {} | {} | {} {kind} | {} {kind} | {} {kind} |",
            case.name,
            case.modalities.len() + 1,
            n1 * n2,
            fmt(ours),
            fmt(scored),
            fmt(naive_err)
        );
    }
}
