//! Prints the accuracy table of the README: gram-nostd's exact path and score path vs. the
//! published float32 Gram-det recipe on every reference case (testdata/reference).
//! Relative error where the exact volume is nonzero; absolute error where it is zero.
//! Run: `cargo run -p gram-nostd --example reference_table`

#[path = "../tests/support/reference.rs"]
mod reference;

use gram_nostd::{candidate_at, naive, score_row, volume};

/// Worst error over the pairs of one case, split by exact ≠ 0 (relative) and exact = 0
/// (absolute). NaN or inf from a method poisons the maximum on purpose.
#[derive(Default, Clone, Copy)]
struct Worst {
    rel: Option<f64>,
    abs: Option<f64>,
}

impl Worst {
    fn add(&mut self, got: f64, exact: f64) {
        let e = reference::error(got, exact);
        let slot = if exact == 0.0 {
            &mut self.abs
        } else {
            &mut self.rel
        };
        *slot = Some(match *slot {
            Some(w) if w.is_nan() || e.is_nan() => f64::NAN,
            Some(w) => w.max(e),
            None => e,
        });
    }

    fn show(&self) -> String {
        let f = |e: f64| {
            if e.is_nan() {
                "NaN".to_string()
            } else if e.is_infinite() {
                "inf".to_string()
            } else {
                format!("{e:.1e}")
            }
        };
        match (self.rel, self.abs) {
            (Some(r), Some(a)) => format!("{} rel, {} abs", f(r), f(a)),
            (Some(r), None) => format!("{} rel", f(r)),
            (None, Some(a)) => format!("{} abs", f(a)),
            (None, None) => "-".into(),
        }
    }
}

fn main() {
    println!(
        "| case | k | pairs | gram-nostd `volume` | gram-nostd `score_row` (f32 out) | f32 Gram-det recipe |"
    );
    println!("|---|---|---|---|---|---|");
    for case in reference::cases() {
        let (n1, n2) = (case.exact.rows, case.exact.cols);
        let n = case.anchor.cols;
        let mods: Vec<&[f32]> = case.modalities.iter().map(|m| m.data.as_slice()).collect();
        let cands: Vec<_> = (0..n2)
            .map(|j| candidate_at(&mods, n, j).unwrap())
            .collect();
        let mut row = vec![0.0f32; n2];
        let (mut ours, mut scored, mut naive) =
            (Worst::default(), Worst::default(), Worst::default());
        for i in 0..n1 {
            score_row(case.anchor.row(i), &mods, &cands, &mut row).unwrap();
            for (j, &scored_ij) in row.iter().enumerate() {
                let exact = case.exact.data[i * n2 + j];
                let t = case.tuple(i, j);
                ours.add(volume(&t).unwrap(), exact);
                scored.add(scored_ij as f64, exact);
                naive.add(naive::volume_f32(&t) as f64, exact);
            }
        }
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            case.name,
            case.modalities.len() + 1,
            n1 * n2,
            ours.show(),
            scored.show(),
            naive.show()
        );
    }
}
