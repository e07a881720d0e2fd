//! `gram-train demo`: generate a synthetic dataset, train GRAM and the pairwise baseline with
//! the same budget, evaluate both on the test split by volume, and write a table; each run
//! also writes validation snapshots and their `gram report` (OUT/run-*/report/report.html).

use crate::config::{LossKind, TrainConfig};
use crate::data::features::load_split;
use crate::data::synth::{SynthConfig, generate};
use crate::error::Error;
use crate::model::gram::GramModel;
use crate::train::checkpoint::load_model;
use crate::train::embed::{embed_split, retrieval};
use crate::train::fit::{FitOptions, fit};
use candle_core::Device;
use gram_host::metrics::Retrieval;
use std::path::Path;

pub struct DemoConfig {
    pub synth: SynthConfig,
    pub train: TrainConfig,
    pub losses: Vec<LossKind>,
}

impl Default for DemoConfig {
    fn default() -> DemoConfig {
        DemoConfig {
            synth: SynthConfig::default(),
            train: TrainConfig {
                steps: 400,
                batch_size: 256,
                lr: 2e-3,
                warmup: 20,
                embed_dim: 256,
                log_every: 10,
                snapshot_every: 50,
                ..TrainConfig::default()
            },
            losses: vec![LossKind::Gram, LossKind::Pairwise],
        }
    }
}

/// A baseline's own score matrix, negated so that ascending = better: the sum of anchor
/// cosines for the pairwise loss, the multilinear inner product for Symile. None for GRAM.
fn native_scores(loss: LossKind, emb: &[Vec<f32>], anchor: usize, dim: usize) -> Option<Vec<f32>> {
    let n = emb[anchor].len() / dim;
    let row = |t: usize, i: usize| &emb[t][i * dim..(i + 1) * dim];
    let others: Vec<usize> = (0..emb.len()).filter(|&t| t != anchor).collect();
    let score = |i: usize, j: usize| -> f32 {
        match loss {
            LossKind::Gram => 0.0,
            LossKind::Pairwise => others
                .iter()
                .map(|&t| {
                    row(anchor, i)
                        .iter()
                        .zip(row(t, j))
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                })
                .sum(),
            LossKind::Symile => (0..dim)
                .map(|d| row(anchor, i)[d] * others.iter().map(|&t| row(t, j)[d]).product::<f32>())
                .sum(),
        }
    };
    (loss != LossKind::Gram).then(|| (0..n * n).map(|p| -score(p / n, p % n)).collect())
}

/// Run the demo into `out`; returns the markdown table (also written to `out/results.md`,
/// with `out/results.json`).
/// The run's alignment report over its snapshots, in `run_dir/report`.
fn report_run(run_dir: &Path, model: &GramModel) -> Result<(), Error> {
    let report = gram_host::report::ReportOptions {
        out: run_dir.join("report"),
        sampling: Default::default(),
    };
    let anchor = &model.config.modalities[model.anchor_index()];
    gram_host::report::report_snapshots(&run_dir.join("snapshots"), Some(anchor), &report)?;
    eprintln!(
        "alignment report: {}",
        report.out.join("report.html").display()
    );
    Ok(())
}

/// Test retrieval of a model trained with `loss`: every model by volume (the GRAM evaluator);
/// the baselines also by the similarity they were trained with, the fair reading of them.
fn scorings(
    loss: LossKind,
    model: &GramModel,
    emb: &[Vec<f32>],
    n: usize,
) -> Result<Vec<(&'static str, Retrieval)>, Error> {
    let (a, dim) = (model.anchor_index(), model.config.embed_dim);
    let mut out = vec![("volume", retrieval(emb, a, dim)?)];
    if let Some(native) = native_scores(loss, emb, a, dim) {
        let r = gram_host::metrics::evaluate_matrix(&native, n)?;
        let name = if loss == LossKind::Symile {
            "MIP"
        } else {
            "cosine sum"
        };
        out.push((name, r));
    }
    Ok(out)
}

pub fn run(cfg: &DemoConfig, out: &Path, progress: bool, dev: &Device) -> Result<String, Error> {
    let data = out.join("data");
    eprintln!("generating synthetic dataset in {} …", data.display());
    generate(&cfg.synth, &data)?;
    let test = load_split(&data, "test")?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for &loss in &cfg.losses {
        let name = format!("{loss:?}").to_lowercase();
        let run_dir = out.join(format!("run-{name}"));
        eprintln!("training {name} for {} steps …", cfg.train.steps);
        let train_cfg = TrainConfig {
            loss,
            ..cfg.train.clone()
        };
        let opts = FitOptions {
            progress,
            ..FitOptions::default()
        };
        let summary = fit(&data, &run_dir, &train_cfg, opts, dev)?;
        let model = load_model(&run_dir, dev)?;
        if train_cfg.snapshot_every > 0 {
            report_run(&run_dir, &model)?;
        }
        let emb = embed_split(&model, &test, dev)?;
        for (scoring, r) in scorings(loss, &model, &emb, test.len())? {
            let (a, d) = (r.anchor_to_data, r.data_to_anchor);
            rows.push(format!(
                "| {name} | {scoring} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.4} | {:.0} |",
                a.r1, a.r5, a.r10, a.medr, d.r1, d.r5, d.r10, d.medr, summary.final_loss, summary.samples_per_s
            ));
            json.push(serde_json::json!({
                "loss": name, "scored_by": scoring, "test": r.to_json(),
                "final_train_loss": summary.final_loss, "samples_per_s": summary.samples_per_s, "steps": summary.steps,
            }));
        }
    }
    let table = format!(
        "Test retrieval by volume (N = {}, anchor = {}, k = {}), {} steps of batch {} per model:\n\n\
| training loss | scored by | A→D R@1 | R@5 | R@10 | MedR | D→A R@1 | R@5 | R@10 | MedR | final train loss | samples/s |\n\
|---|---|---|---|---|---|---|---|---|---|---|---|\n{}\n",
        test.len(),
        test.info.anchor,
        test.info.modalities.len(),
        cfg.train.steps,
        cfg.train.batch_size,
        rows.join("\n")
    );
    let results = serde_json::json!({"synth": cfg.synth, "train": cfg.train, "results": json});
    let (md, json) = (out.join("results.md"), out.join("results.json"));
    gram_host::output::write_text(&md, &table).map_err(|e| Error::io(&md, e))?;
    gram_host::output::write_text(
        &json,
        &serde_json::to_string_pretty(&results).expect("json"),
    )
    .map_err(|e| Error::io(&json, e))?;
    Ok(table)
}
