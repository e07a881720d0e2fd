//! `gram report`: how aligned an embedding set is, and how alignment evolved over training —
//! retrieval, positive vs negative volumes, cosine vs volume per modality pair, mutual k-NN
//! alignment, a 2-D map — as report.html (self-contained) plus each plot as PNG and SVG.
//!
//! Metrics use every row; plots use an evenly spaced subsample (see [`Sampling`]). The output
//! directory is assembled beside its destination and renamed into place when complete, so a
//! failed run leaves no partial report.

pub mod diagnose;
pub mod html;
pub(crate) mod plots;
pub mod snapshots;
pub mod stats;

pub use diagnose::{Diagnostics, Sampling};
pub use snapshots::report_snapshots;

use crate::commands::Inputs;
use crate::error::{Arg, Error};
use crate::missing::MissingRule;
use crate::output;
use html::Figure;
use indicatif::{ProgressBar, ProgressStyle};
use plots::{CosineVolume, Map, Ranks, Volumes, render};
use std::path::{Path, PathBuf};

/// Where and how to write a report.
pub struct ReportOptions {
    pub out: PathBuf,
    pub sampling: Sampling,
}

pub(crate) fn progress_bar(len: u64) -> ProgressBar {
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

/// Report on one embedding set; returns the summary that `--json` prints. With `missing`, rows
/// of NaN are missing vectors completed by the rule, and the report says how many rows each
/// modality misses.
pub fn report_files(
    anchor: &str,
    modalities: &[String],
    names: Option<&[String]>,
    missing: Option<MissingRule>,
    opts: &ReportOptions,
) -> Result<serde_json::Value, Error> {
    let inputs = Inputs::load(anchor, modalities, missing)?;
    let batch = inputs.batch()?;
    let names: Vec<String> = match names {
        Some(n) if n.len() != modalities.len() + 1 => {
            return Err(Error::argument(
                Arg::Names,
                "",
                format!(
                    "{} names for {} vectors (the anchor and each --modality)",
                    n.len(),
                    modalities.len() + 1
                ),
            ));
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
    let mut summary = d.summary_json();
    if let Some(rule) = missing {
        let counts: serde_json::Map<String, serde_json::Value> = names[1..]
            .iter()
            .zip(&inputs.missing_rows)
            .map(|(n, &c)| (n.clone(), c.into()))
            .collect();
        summary["missing_rows"] = counts.into();
        summary["missing_rule"] = format!("{rule:?}").to_lowercase().into();
    }
    tick("plots");
    write_atomically(&opts.out, |dir| {
        let figures = set_figures(&d, dir, "")?;
        let intro = format!(
            "{} samples, D = {}, anchor {} with {}. Metrics use every row; plots use {} evenly spaced rows.{}",
            d.n,
            d.dim,
            html::escape(&names[0]),
            html::escape(&names[1..].join(", ")),
            d.sample.len(),
            html::escape(&missing_text(&summary))
        );
        let sections = vec![("Alignment".to_string(), html::tables(&d))];
        let page = html::page("gram report", &intro, &sections, &figures);
        write(dir, "report.html", &page)?;
        write(dir, "summary.json", &format!("{summary:#}\n"))
    })?;
    bar.finish_and_clear();
    Ok(summary)
}

/// " Missing rows, scored by the present rule: v 0 of 40, a 3 of 40." for a summary with
/// `missing_rows` (in modality order), else "".
fn missing_text(summary: &serde_json::Value) -> String {
    let Some(counts) = summary["missing_rows"].as_object() else {
        return String::new();
    };
    let names = summary["modalities"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1);
    let each: Vec<String> = names
        .filter_map(|n| n.as_str())
        .map(|n| format!("{n} {} of {}", counts[n], summary["n"]))
        .collect();
    format!(
        " Missing rows, scored by the {} rule: {}.",
        summary["missing_rule"].as_str().unwrap_or("?"),
        each.join(", ")
    )
}

/// The plots of one embedding set (`prefix` tells snapshot steps apart).
pub(crate) fn set_figures(d: &Diagnostics, dir: &Path, prefix: &str) -> Result<Vec<Figure>, Error> {
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
            let svg = svg.map_err(|e| Error::data(&name, e.to_string()))?;
            write(dir, &format!("{name}.svg"), &svg)?;
            Ok(Figure { name, caption, svg })
        })
        .collect()
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> Result<(), Error> {
    std::fs::write(dir.join(name), text)
        .map_err(|e| Error::io(dir.join(name).display(), format!("cannot write: {e}")))
}

/// Build the report in a staging directory beside `out`, then move it into place; an existing
/// `out` is replaced only if it holds a previous report (see [`output::write_dir_atomically`]).
pub(crate) fn write_atomically(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    output::write_dir_atomically(out, "report.html", "gram report", fill)
}

/// The stdout summary of a report.
pub fn summary_text(summary: &serde_json::Value) -> String {
    let one = |v: &serde_json::Value| -> String {
        let r = &v["retrieval"];
        let mut s = missing_text(v).trim_start().to_string();
        if !s.is_empty() {
            s.push('\n');
        }
        s += &format!(
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
