//! `gram report --snapshots DIR`: the diagnostics of every `<step>_<modality>.npy` step, drawn
//! as curves over training, with the maps of the first and last step.

use super::diagnose::{Diagnostics, Sampling};
use super::html::{self, Figure};
use super::plots::{Curves, Map, render};
use super::{ReportOptions, progress_bar, set_figures, write, write_atomically};
use crate::commands::Inputs;
use crate::error::{Arg, Error};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

/// One step of a snapshot directory: `<step>_<modality>.npy` files.
struct Step {
    step: u64,
    files: Vec<(String, PathBuf)>,
}

/// The steps of `dir`, each with the same modalities (sorted by step, then name).
fn scan_snapshots(dir: &Path) -> Result<Vec<Step>, Error> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(&shown, e.to_string()))?;
    let mut steps: std::collections::BTreeMap<u64, Vec<(String, PathBuf)>> = Default::default();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(&shown, e.to_string()))?.path();
        let Some(file) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".npy") else {
            continue;
        };
        let Some((step, modality)) = stem.split_once('_') else {
            continue;
        };
        let Ok(step) = step.parse::<u64>() else {
            continue;
        };
        steps
            .entry(step)
            .or_default()
            .push((modality.to_string(), path));
    }
    if steps.is_empty() {
        return Err(Error::data(
            &shown,
            "no snapshot files named <step>_<modality>.npy",
        ));
    }
    let mut out: Vec<Step> = steps
        .into_iter()
        .map(|(step, mut files)| {
            files.sort();
            Step { step, files }
        })
        .collect();
    let first: Vec<&String> = out[0].files.iter().map(|f| &f.0).collect();
    for s in &out {
        let names: Vec<&String> = s.files.iter().map(|f| &f.0).collect();
        if names != first {
            return Err(Error::data(
                &shown,
                format!(
                    "step {} has modalities {names:?}, step {} has {first:?}",
                    s.step, out[0].step
                ),
            ));
        }
    }
    out.sort_by_key(|s| s.step);
    Ok(out)
}

/// The anchor (`--anchor-modality`, else `text` if present, else the first name) and the
/// other modalities in name order.
fn modality_order(dir: &Path, steps: &[Step], anchor: Option<&str>) -> Result<Vec<String>, Error> {
    let modalities: Vec<String> = steps[0].files.iter().map(|f| f.0.clone()).collect();
    let anchor = match anchor {
        Some(a) if modalities.iter().any(|m| m == a) => a.to_string(),
        Some(a) => {
            return Err(Error::argument(
                Arg::AnchorModality,
                a,
                format!("not among the snapshots' modalities {modalities:?}"),
            ));
        }
        None if modalities.iter().any(|m| m == "text") => "text".into(),
        None => modalities[0].clone(),
    };
    if modalities.len() < 2 {
        return Err(Error::data(
            dir.display(),
            format!("one modality ({anchor}); a report needs at least two"),
        ));
    }
    Ok(std::iter::once(anchor.clone())
        .chain(modalities.into_iter().filter(|m| *m != anchor))
        .collect())
}

/// The diagnostics of every step, the vectors in `order`.
fn diagnose_steps(
    steps: &[Step],
    order: &[String],
    sampling: Sampling,
    bar: &ProgressBar,
) -> Result<Vec<Diagnostics>, Error> {
    steps
        .iter()
        .map(|s| {
            bar.set_message(format!("step {}", s.step));
            let path = |m: &str| {
                let p = &s.files.iter().find(|f| f.0 == m).expect("scanned").1;
                p.to_string_lossy().into_owned()
            };
            let mods: Vec<String> = order[1..].iter().map(|m| path(m)).collect();
            let inputs = Inputs::load(&path(&order[0]), &mods, None)?;
            let d = Diagnostics::new(&inputs.batch()?, order, sampling, &|_| {})?;
            bar.inc(1);
            Ok(d)
        })
        .collect()
}

/// Report on training snapshots; returns the per-step summaries `--json` prints.
pub fn report_snapshots(
    dir: &Path,
    anchor_modality: Option<&str>,
    opts: &ReportOptions,
) -> Result<serde_json::Value, Error> {
    let steps = scan_snapshots(dir)?;
    let order = modality_order(dir, &steps, anchor_modality)?;
    let bar = progress_bar(steps.len() as u64 + 1);
    let diags = diagnose_steps(&steps, &order, opts.sampling, &bar)?;
    bar.set_message("plots");
    let numbers: Vec<u64> = steps.iter().map(|s| s.step).collect();
    write_atomically(&opts.out, |out| write_page(out, dir, &diags, &numbers))?;
    bar.finish_and_clear();
    Ok(snapshots_json(&diags, &numbers))
}

/// report.html, summary.json and the plots of a snapshot report into `out`.
fn write_page(out: &Path, dir: &Path, diags: &[Diagnostics], steps: &[u64]) -> Result<(), Error> {
    let mut figures = vec![curves_figure(diags, steps, out)?];
    let (first, last) = (&diags[0], &diags[diags.len() - 1]);
    let (first_step, last_step) = (steps[0], steps[steps.len() - 1]);
    for (d, step) in [(first, first_step), (last, last_step)] {
        let title = format!("Step {step}: PCA map of the embeddings by modality");
        let name = format!("step{step}_map");
        let svg = render(&Map { diag: d, title }, out, &name)
            .map_err(|e| Error::data(&name, e.to_string()))?;
        write(out, &format!("{name}.svg"), &svg)?;
        figures.push(Figure {
            name,
            caption: format!("PCA map at step {step} (first and last snapshot)."),
            svg,
        });
    }
    figures.extend(set_figures(last, out, &format!("step{last_step}_"))?);
    let intro = format!(
        "{} snapshots (steps {first_step}–{last_step}) from {}; anchor {}; {} samples each. Curves use every row; plots use {} evenly spaced rows.",
        steps.len(),
        html::escape(&dir.display().to_string()),
        html::escape(&last.names[0]),
        last.n,
        last.sample.len()
    );
    let sections = vec![(format!("Alignment at step {last_step}"), html::tables(last))];
    let page = html::page(
        "gram report: alignment over training",
        &intro,
        &sections,
        &figures,
    );
    write(out, "report.html", &page)?;
    write(
        out,
        "summary.json",
        &format!("{:#}\n", snapshots_json(diags, steps)),
    )
}

fn snapshots_json(diags: &[Diagnostics], steps: &[u64]) -> serde_json::Value {
    serde_json::Value::Array(
        diags
            .iter()
            .zip(steps)
            .map(|(d, s)| {
                let mut v = d.summary_json();
                v["step"] = (*s).into();
                v
            })
            .collect(),
    )
}

fn curves_figure(diags: &[Diagnostics], steps: &[u64], dir: &Path) -> Result<Figure, Error> {
    let series = |f: &dyn Fn(&Diagnostics) -> f64| diags.iter().map(f).collect::<Vec<f64>>();
    let first = &diags[0];
    let knn = first
        .pairs
        .iter()
        .enumerate()
        .map(|(p, pair)| {
            let label = format!("{}–{}", first.names[pair.a], first.names[pair.b]);
            (label, series(&|d: &Diagnostics| d.pairs[p].mutual_knn))
        })
        .collect();
    let curves = Curves {
        steps,
        panels: vec![
            (
                "Retrieval R@1 (%)".into(),
                vec![
                    (
                        "anchor → data".into(),
                        series(&|d| d.retrieval.anchor_to_data.r1),
                    ),
                    (
                        "data → anchor".into(),
                        series(&|d| d.retrieval.data_to_anchor.r1),
                    ),
                ],
            ),
            (
                "Separation AUC, P(negative > positive)".into(),
                vec![("AUC".into(), series(&|d| d.auc))],
            ),
            ("Mutual k-NN alignment (k = 10)".into(), knn),
            (
                "Volumes".into(),
                vec![
                    (
                        "mean positive".into(),
                        series(&|d| {
                            d.positives.iter().map(|&v| v as f64).sum::<f64>() / d.n as f64
                        }),
                    ),
                    ("mean row minimum".into(), series(&|d| d.mean_row_min)),
                ],
            ),
        ],
    };
    let svg = render(&curves, dir, "curves")
        .map_err(|e| Error::Usage(format!("curves: {e}").to_string()))?;
    write(dir, "curves.svg", &svg)?;
    Ok(Figure {
        name: "curves".into(),
        caption: "Every metric over the training steps of the snapshots.".into(),
        svg,
    })
}
