//! The `gram` subcommands as functions: load and check inputs, compute, write atomically.
//! Every failure is a [`CliError`] whose message names the file and the problem.

use crate::cpu::{CpuStats, Scorer};
use crate::input::{self, InputError, Matrix};
use crate::metrics::{self, Retrieval};
use crate::output;
use gram_nostd::{GramError, LossParts, gram_loss};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A user-facing failure: printed as `error: <message>`, exit code 2.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<InputError> for CliError {
    fn from(e: InputError) -> CliError {
        CliError(e.to_string())
    }
}

/// The inputs of every subcommand: an anchor and ≥ 1 modalities, shapes checked together.
pub struct Inputs {
    pub anchor: Matrix,
    pub modalities: Vec<Matrix>,
    pub read_time: Duration,
}

impl Inputs {
    pub fn load(anchor: &str, modalities: &[String]) -> Result<Inputs, CliError> {
        let t = Instant::now();
        if modalities.is_empty() {
            return Err(CliError(
                "no --modality given: need at least one modality besides the anchor".into(),
            ));
        }
        if modalities.len() + 1 > gram_nostd::MAX_K {
            return Err(CliError(format!(
                "{} modalities given; at most {} are supported",
                modalities.len(),
                gram_nostd::MAX_K - 1
            )));
        }
        let anchor = input::load(anchor)?;
        let modalities = modalities
            .iter()
            .map(|m| input::load(m))
            .collect::<Result<Vec<_>, _>>()?;
        for m in &modalities {
            if m.cols != anchor.cols {
                return Err(CliError(format!(
                    "{}: dimension {} does not match the anchor {} (dimension {})",
                    m.name, m.cols, anchor.name, anchor.cols
                )));
            }
            if m.rows != modalities[0].rows {
                return Err(CliError(format!(
                    "{}: {} rows, but {} has {} (row j of every modality belongs to candidate j)",
                    m.name, m.rows, modalities[0].name, modalities[0].rows
                )));
            }
        }
        Ok(Inputs {
            anchor,
            modalities,
            read_time: t.elapsed(),
        })
    }

    pub fn scorer(&self) -> Result<Scorer<'_>, CliError> {
        let views: Vec<&[f32]> = self.modalities.iter().map(|m| m.as_slice()).collect();
        Scorer::new(&views, self.modalities[0].rows, self.anchor.cols)
            .map_err(|e| self.compute_error(e))
    }

    fn compute_error(&self, e: GramError) -> CliError {
        let what = match e {
            GramError::OutOfRange => {
                "a volume exceeds the float32 range (inputs of huge magnitude)".to_string()
            }
            other => other.to_string(),
        };
        CliError(format!("{}: {what}", self.anchor.name))
    }

    fn require_square(&self) -> Result<(), CliError> {
        let n2 = self.modalities[0].rows;
        if self.anchor.rows != n2 {
            return Err(CliError(format!(
                "{}: {} rows, but the modalities have {} (eval and loss pair row i of the anchor with row i of each modality)",
                self.anchor.name, self.anchor.rows, n2
            )));
        }
        Ok(())
    }
}

/// Timings and counts of a `score` run.
pub struct ScoreReport {
    pub shape: (usize, usize),
    pub read: Duration,
    pub compute: Duration,
    pub write: Duration,
    pub stats: CpuStats,
}

pub fn score(anchor: &str, modalities: &[String], out: &Path) -> Result<ScoreReport, CliError> {
    let inputs = Inputs::load(anchor, modalities)?;
    let t = Instant::now();
    let scorer = inputs.scorer()?;
    let (n1, n2) = (inputs.anchor.rows, inputs.modalities[0].rows);
    let mut v = vec![0.0f32; n1 * n2];
    let stats = scorer
        .volume_matrix(inputs.anchor.as_slice(), &mut v)
        .map_err(|e| inputs.compute_error(e))?;
    let compute = t.elapsed();
    let t = Instant::now();
    output::write_npy_f32(out, &[n1, n2], &v)
        .map_err(|e| CliError(format!("{}: cannot write: {e}", out.display())))?;
    Ok(ScoreReport {
        shape: (n1, n2),
        read: inputs.read_time,
        compute,
        write: t.elapsed(),
        stats,
    })
}

pub fn eval(anchor: &str, modalities: &[String]) -> Result<Retrieval, CliError> {
    let inputs = Inputs::load(anchor, modalities)?;
    inputs.require_square()?;
    let scorer = inputs.scorer()?;
    metrics::evaluate(&scorer, inputs.anchor.as_slice(), inputs.anchor.cols)
        .map(|(r, _)| r)
        .map_err(|e| inputs.compute_error(e))
}

/// The GRAM loss of the batch, over volumes in f64 (so it matches an exact evaluation to
/// ~1e-12, not to f32 rounding of V).
pub fn loss(
    anchor: &str,
    modalities: &[String],
    temperature: f64,
    label_smoothing: f64,
) -> Result<LossParts, CliError> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(CliError(format!(
            "--temperature {temperature}: must be a positive number"
        )));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(CliError(format!(
            "--label-smoothing {label_smoothing}: must be in [0, 1]"
        )));
    }
    let inputs = Inputs::load(anchor, modalities)?;
    inputs.require_square()?;
    let scorer = inputs.scorer()?;
    let b = inputs.anchor.rows;
    let mut v = vec![0.0f64; b * b];
    scorer
        .volume_matrix(inputs.anchor.as_slice(), &mut v)
        .map_err(|e| inputs.compute_error(e))?;
    gram_loss(&v, b, temperature, label_smoothing, None).map_err(|e| inputs.compute_error(e))
}

pub fn retrieval_json(r: &Retrieval) -> serde_json::Value {
    let dir = |s: &gram_nostd::RankSummary| serde_json::json!({"r1": s.r1, "r5": s.r5, "r10": s.r10, "medr": s.medr, "meanr": s.meanr});
    serde_json::json!({"anchor_to_data": dir(&r.anchor_to_data), "data_to_anchor": dir(&r.data_to_anchor)})
}

pub fn retrieval_table(r: &Retrieval) -> String {
    let mut s = String::from("direction        R@1     R@5     R@10    MedR    MeanR\n");
    for (name, d) in [
        ("anchor->data", &r.anchor_to_data),
        ("data->anchor", &r.data_to_anchor),
    ] {
        s += &format!(
            "{name:<15} {:>6.2}  {:>6.2}  {:>6.2}  {:>6.1}  {:>7.2}\n",
            d.r1, d.r5, d.r10, d.medr, d.meanr
        );
    }
    s
}
