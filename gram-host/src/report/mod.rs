//! `gram report`: how aligned an embedding set is, and how alignment evolved over training —
//! retrieval, positive vs negative volumes, cosine vs volume per modality pair, mutual k-NN
//! alignment, a 2-D map — as report.html (self-contained) plus each plot as PNG and SVG.
//!
//! Metrics use every row; plots use an evenly spaced subsample (see [`Sampling`]). The output
//! directory is assembled beside its destination and renamed into place when complete, so a
//! failed run leaves no partial report.

pub mod diagnose;
pub mod html;
pub mod plots;
pub mod stats;

pub use diagnose::{Diagnostics, Sampling};

use crate::commands::{CliError, Inputs};
use html::Figure;
use indicatif::{ProgressBar, ProgressStyle};
use plots::{CosineVolume, Curves, Map, Ranks, Volumes, render};
use std::path::{Path, PathBuf};

/// Where and how to write a report.
pub struct ReportOptions {
    pub out: PathBuf,
    pub sampling: Sampling,
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {bar:30} {pos}/{len} {msg}")
            .expect("static template"),
    );
    bar
}

/// The name a report gives a file's vectors: its stem (`emb/text.npy` → `text`).
fn stem(spec: &str) -> String {
    let path = spec.split(".safetensors:").next().unwrap_or(spec);
    Path::new(path)
        .file_stem()
        .map_or(spec.to_string(), |s| s.to_string_lossy().into_owned())
}

/// Report on one embedding set; returns the summary that `--json` prints.
pub fn report_files(
    anchor: &str,
    modalities: &[String],
    names: Option<&[String]>,
    opts: &ReportOptions,
) -> Result<serde_json::Value, CliError> {
    let inputs = Inputs::load(anchor, modalities)?;
    let batch = inputs.batch()?;
    let names: Vec<String> = match names {
        Some(n) if n.len() != modalities.len() + 1 => {
            return Err(CliError(format!(
                "--names: {} names for {} vectors (the anchor and each --modality)",
                n.len(),
                modalities.len() + 1
            )));
        }
        Some(n) => n.to_vec(),
        None => std::iter::once(anchor)
            .chain(modalities.iter().map(String::as_str))
            .map(stem)
            .collect(),
    };
    let bar = progress_bar(6);
    let tick = |m: &str| {
        bar.set_message(m.to_string());
        bar.inc(1);
    };
    let d = Diagnostics::new(&batch, &names, opts.sampling, &tick)?;
    tick("plots");
    write_atomically(&opts.out, |dir| {
        let figures = set_figures(&d, dir, "")?;
        let intro = format!(
            "{} samples, D = {}, anchor {} with {}. Metrics use every row; plots use {} evenly spaced rows.",
            d.n,
            d.dim,
            html::escape(&names[0]),
            html::escape(&names[1..].join(", ")),
            d.sample.len()
        );
        let sections = vec![("Alignment".to_string(), html::tables(&d))];
        let page = html::page("gram report", &intro, &sections, &figures);
        write(dir, "report.html", &page)?;
        write(dir, "summary.json", &format!("{:#}\n", d.summary_json()))
    })?;
    bar.finish_and_clear();
    Ok(d.summary_json())
}

/// The plots of one embedding set (`prefix` tells snapshot steps apart).
fn set_figures(d: &Diagnostics, dir: &Path, prefix: &str) -> Result<Vec<Figure>, CliError> {
    let map_title = format!("{prefix}PCA map of the embeddings by modality");
    let drawn: [(&str, String, Result<String, String>); 4] = [
        (
            "volumes",
            "Distribution of the positive volumes (each anchor with its own candidate, every row) and of the negatives (off-diagonal, sampled rows). AUC = P(negative > positive).".into(),
            render(&Volumes(d), dir, &format!("{prefix}volumes")),
        ),
        (
            "ranks",
            "Rank of the true match in both directions (1 = retrieved first); ties count against it.".into(),
            render(&Ranks(d), dir, &format!("{prefix}ranks")),
        ),
        (
            "cosine_volume",
            "Per modality pair: cosine of the positive pair vs the volume of the whole positive tuple (sampled rows), with Spearman's ρ.".into(),
            render(&CosineVolume(d), dir, &format!("{prefix}cosine_volume")),
        ),
        (
            "map",
            "The sampled embeddings of every modality projected on their first two principal components (PCA, as a linear stand-in for the GRAM paper's t-SNE map).".into(),
            render(&Map { diag: d, title: map_title }, dir, &format!("{prefix}map")),
        ),
    ];
    drawn
        .into_iter()
        .map(|(name, caption, svg)| {
            let name = format!("{prefix}{name}");
            let svg = svg.map_err(|e| CliError(format!("{name}: {e}")))?;
            write(dir, &format!("{name}.svg"), &svg)?;
            Ok(Figure { name, caption, svg })
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), CliError> {
    std::fs::write(dir.join(name), text)
        .map_err(|e| CliError(format!("{}: cannot write: {e}", dir.join(name).display())))
}

/// Build the report in a staging directory beside `out`, then move it into place. An
/// existing `out` is replaced only if it holds a previous report (report.html), never other
/// data.
fn write_atomically(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let shown = out.display();
    if out.exists() && !out.join("report.html").is_file() {
        let empty = out
            .read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(CliError(format!(
                "{shown}: exists and is not a gram report; choose another --out"
            )));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| CliError(format!("{shown}: not a directory name")))?
        .to_string_lossy();
    let stage = parent.join(format!(".{name}.partial-{}", std::process::id()));
    std::fs::create_dir_all(&stage)
        .map_err(|e| CliError(format!("{}: cannot create: {e}", stage.display())))?;
    let result = fill(&stage).and_then(|()| {
        if out.exists() {
            std::fs::remove_dir_all(out)
                .map_err(|e| CliError(format!("{shown}: cannot replace: {e}")))?;
        }
        std::fs::rename(&stage, out).map_err(|e| CliError(format!("{shown}: cannot create: {e}")))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&stage);
    }
    result
}

/// One step of a snapshot directory: `<step>_<modality>.npy` files.
struct Step {
    step: u64,
    files: Vec<(String, PathBuf)>,
}

/// The steps of `dir`, each with the same modalities (sorted by step, then name).
fn scan_snapshots(dir: &Path) -> Result<Vec<Step>, CliError> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir).map_err(|e| CliError(format!("{shown}: {e}")))?;
    let mut steps: std::collections::BTreeMap<u64, Vec<(String, PathBuf)>> = Default::default();
    for entry in entries {
        let path = entry.map_err(|e| CliError(format!("{shown}: {e}")))?.path();
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
        return Err(CliError(format!(
            "{shown}: no snapshot files named <step>_<modality>.npy"
        )));
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
            return Err(CliError(format!(
                "{shown}: step {} has modalities {names:?}, step {} has {first:?}",
                s.step, out[0].step
            )));
        }
    }
    out.sort_by_key(|s| s.step);
    Ok(out)
}

/// Report on training snapshots; returns the per-step summaries `--json` prints.
pub fn report_snapshots(
    dir: &Path,
    anchor_modality: Option<&str>,
    opts: &ReportOptions,
) -> Result<serde_json::Value, CliError> {
    let steps = scan_snapshots(dir)?;
    let modalities: Vec<String> = steps[0].files.iter().map(|f| f.0.clone()).collect();
    let anchor = match anchor_modality {
        Some(a) if modalities.iter().any(|m| m == a) => a.to_string(),
        Some(a) => {
            return Err(CliError(format!(
                "--anchor-modality {a}: not among the snapshots' modalities {modalities:?}"
            )));
        }
        None if modalities.iter().any(|m| m == "text") => "text".into(),
        None => modalities[0].clone(),
    };
    if modalities.len() < 2 {
        return Err(CliError(format!(
            "{}: one modality ({anchor}); a report needs at least two",
            dir.display()
        )));
    }
    let order: Vec<String> = std::iter::once(anchor.clone())
        .chain(modalities.iter().filter(|m| **m != anchor).cloned())
        .collect();
    let bar = progress_bar(steps.len() as u64 + 1);
    let mut diags = vec![];
    for s in &steps {
        bar.set_message(format!("step {}", s.step));
        let path = |m: &str| {
            let p = &s.files.iter().find(|f| f.0 == m).expect("scanned").1;
            p.to_string_lossy().into_owned()
        };
        let mods: Vec<String> = order[1..].iter().map(|m| path(m)).collect();
        let inputs = Inputs::load(&path(&anchor), &mods)?;
        diags.push(Diagnostics::new(
            &inputs.batch()?,
            &order,
            opts.sampling,
            &|_| {},
        )?);
        bar.inc(1);
    }
    bar.set_message("plots");
    let step_numbers: Vec<u64> = steps.iter().map(|s| s.step).collect();
    write_atomically(&opts.out, |out| {
        let mut figures = vec![curves_figure(&diags, &step_numbers, out)?];
        let (first, last) = (&diags[0], diags.last().expect("≥ 1 step"));
        for (d, step) in [
            (first, step_numbers[0]),
            (last, *step_numbers.last().expect("≥ 1")),
        ] {
            let title = format!("Step {step}: PCA map of the embeddings by modality");
            let name = format!("step{step}_map");
            let svg = render(&Map { diag: d, title }, out, &name)
                .map_err(|e| CliError(format!("{name}: {e}")))?;
            write(out, &format!("{name}.svg"), &svg)?;
            figures.push(Figure {
                name,
                caption: format!("PCA map at step {step} (first and last snapshot)."),
                svg,
            });
        }
        let last_step = step_numbers.last().expect("≥ 1 step");
        figures.extend(set_figures(last, out, &format!("step{last_step}_"))?);
        let intro = format!(
            "{} snapshots (steps {}–{}) from {}; anchor {}; {} samples each. Curves use every row; plots use {} evenly spaced rows.",
            steps.len(),
            step_numbers[0],
            last_step,
            html::escape(&dir.display().to_string()),
            html::escape(&anchor),
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
            &format!("{:#}\n", snapshots_json(&diags, &step_numbers)),
        )
    })?;
    bar.finish_and_clear();
    Ok(snapshots_json(&diags, &step_numbers))
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

fn curves_figure(diags: &[Diagnostics], steps: &[u64], dir: &Path) -> Result<Figure, CliError> {
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
    let svg = render(&curves, dir, "curves").map_err(|e| CliError(format!("curves: {e}")))?;
    write(dir, "curves.svg", &svg)?;
    Ok(Figure {
        name: "curves".into(),
        caption: "Every metric over the training steps of the snapshots.".into(),
        svg,
    })
}

/// The stdout summary of a report.
pub fn summary_text(summary: &serde_json::Value) -> String {
    let one = |v: &serde_json::Value| -> String {
        let r = &v["retrieval"];
        let mut s = format!(
            "anchor->data R@1 {:.2}  data->anchor R@1 {:.2}  AUC {:.4}  mean row-min volume {:.4}\n",
            r["anchor_to_data"]["r1"].as_f64().unwrap_or(f64::NAN),
            r["data_to_anchor"]["r1"].as_f64().unwrap_or(f64::NAN),
            v["separation_auc"].as_f64().unwrap_or(f64::NAN),
            v["mean_row_min_volume"].as_f64().unwrap_or(f64::NAN),
        );
        for p in v["pairs"].as_array().into_iter().flatten() {
            s += &format!(
                "  {}-{}: mutual k-NN {:.3}, Spearman(cosine, volume) {:.3}\n",
                p["a"].as_str().unwrap_or("?"),
                p["b"].as_str().unwrap_or("?"),
                p["mutual_knn"].as_f64().unwrap_or(f64::NAN),
                p["spearman_cosine_volume"].as_f64().unwrap_or(f64::NAN),
            );
        }
        s
    };
    match summary {
        serde_json::Value::Array(steps) => steps
            .iter()
            .map(|v| format!("step {}: {}", v["step"], one(v)))
            .collect(),
        v => one(v),
    }
}
