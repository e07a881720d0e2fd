//! The report's plots (plotters), each drawn once per backend: SVG (inlined in report.html)
//! and PNG (beside it). Text is set in DejaVu Sans, compiled in, so the PNGs do not depend on
//! the fonts of the machine that draws them.

use super::diagnose::Diagnostics;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// Colours of series and modalities (colour-blind-safe Okabe–Ito palette).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The bundled font cannot fail to parse; if it did, plots would lose their text, not fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        );
    });
}

type Area<'a, DB> = DrawingArea<DB, Shift>;

/// A plot error as text (plotters' errors are generic over the backend).
fn e<E: std::fmt::Debug>(err: E) -> String {
    format!("drawing a plot: {err:?}")
}

/// A drawing, rendered to any backend.
pub trait Plot {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, area: &Area<DB>) -> Result<(), String>;
}

/// Render `plot` as `dir/name.png` and return its SVG text.
pub fn render(plot: &impl Plot, dir: &Path, name: &str) -> Result<String, String> {
    register_font();
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, plot.size()).into_drawing_area();
        area.fill(&WHITE).map_err(e)?;
        plot.draw(&area)?;
        area.present().map_err(e)?;
    }
    let png = dir.join(format!("{name}.png"));
    let area = BitMapBackend::new(&png, plot.size()).into_drawing_area();
    area.fill(&WHITE).map_err(e)?;
    plot.draw(&area)?;
    area.present().map_err(e)?;
    Ok(svg)
}

/// The boxed legend every plot with several series draws.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
    font: u32,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", font))
        .draw()
        .map_err(e)
}

/// `bins` equal-width bins over [lo, hi]: (left edge, fraction of the values).
fn histogram(values: &[f32], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values {
        let b = (((v as f64 - lo) / w).floor().max(0.0) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let total = values.len().max(1) as f64;
    counts
        .iter()
        .enumerate()
        .map(|(b, &c)| (lo + b as f64 * w, c as f64 / total))
        .collect()
}

/// The q-quantile of `values` (nearest rank).
fn quantile(values: &[f32], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable_by(f32::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .map_or(0.0, |&x| x as f64)
}

/// Positive vs negative volumes as two normalised histograms.
pub struct Volumes<'a>(pub &'a Diagnostics);

impl Plot for Volumes<'_> {
    fn size(&self) -> (u32, u32) {
        (720, 400)
    }
    fn draw<DB: DrawingBackend>(&self, area: &Area<DB>) -> Result<(), String> {
        let d = self.0;
        let hi = quantile(&d.negatives, 0.995)
            .max(quantile(&d.positives, 0.995))
            .max(1e-12);
        let bins = 60;
        let series = [
            (
                "positives (own candidate)",
                histogram(&d.positives, 0.0, hi, bins),
            ),
            (
                "negatives (sampled rows)",
                histogram(&d.negatives, 0.0, hi, bins),
            ),
        ];
        let top = series
            .iter()
            .flat_map(|s| s.1.iter().map(|b| b.1))
            .fold(0.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("Volumes: positives vs negatives (AUC {:.4})", d.auc),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..hi, 0.0..top.max(1e-9))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("volume")
            .y_desc("fraction")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(e)?;
        let w = hi / bins as f64;
        for (s, (label, bars)) in series.iter().enumerate() {
            let c = colour(s);
            chart
                .draw_series(
                    bars.iter().map(|&(x, y)| {
                        Rectangle::new([(x, 0.0), (x + w, y)], c.mix(0.45).filled())
                    }),
                )
                .map_err(e)?
                .label(*label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 13)
    }
}

/// Rank bins of the retrieval histogram.
const RANK_BINS: [(u32, u32, &str); 7] = [
    (1, 1, "1"),
    (2, 5, "2–5"),
    (6, 10, "6–10"),
    (11, 50, "11–50"),
    (51, 100, "51–100"),
    (101, 500, "101–500"),
    (501, u32::MAX, ">500"),
];

/// The rank of the true match, both directions, as grouped bars.
pub struct Ranks<'a>(pub &'a Diagnostics);

impl Plot for Ranks<'_> {
    fn size(&self) -> (u32, u32) {
        (720, 400)
    }
    fn draw<DB: DrawingBackend>(&self, area: &Area<DB>) -> Result<(), String> {
        let d = self.0;
        let frac = |ranks: &[u32], lo: u32, hi: u32| {
            ranks.iter().filter(|&&r| r >= lo && r <= hi).count() as f64 / ranks.len() as f64
        };
        let mut chart = ChartBuilder::on(area)
            .caption(
                "Rank of the true match (lower is better)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..RANK_BINS.len() as f64, 0.0..1.05)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(RANK_BINS.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (*x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < RANK_BINS.len() {
                    RANK_BINS[i as usize].2.to_string()
                } else {
                    String::new()
                }
            })
            .x_desc("rank")
            .y_desc("fraction of queries")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(e)?;
        let dirs = [
            ("anchor → data", &d.ranks_a2d),
            ("data → anchor", &d.ranks_d2a),
        ];
        for (s, (label, ranks)) in dirs.iter().enumerate() {
            let c = colour(s);
            let x0 = 0.1 + 0.4 * s as f64;
            chart
                .draw_series(RANK_BINS.iter().enumerate().map(|(b, &(lo, hi, _))| {
                    let x = b as f64 + x0;
                    Rectangle::new([(x, 0.0), (x + 0.4, frac(ranks, lo, hi))], c.filled())
                }))
                .map_err(e)?
                .label(*label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 13)
    }
}

/// Per modality pair: cosine of the positive pair vs the positive tuple's volume.
pub struct CosineVolume<'a>(pub &'a Diagnostics);

impl Plot for CosineVolume<'_> {
    fn size(&self) -> (u32, u32) {
        let cols = self.0.pairs.len().clamp(1, 3) as u32;
        let rows = self.0.pairs.len().div_ceil(3).max(1) as u32;
        (320 * cols, 300 * rows)
    }
    fn draw<DB: DrawingBackend>(&self, area: &Area<DB>) -> Result<(), String> {
        let d = self.0;
        let cols = d.pairs.len().clamp(1, 3);
        let rows = d.pairs.len().div_ceil(3).max(1);
        let panels = area.split_evenly((rows, cols));
        let vols: Vec<f32> = d.sample.iter().map(|&i| d.positives[i]).collect();
        let vmax = quantile(&vols, 1.0).max(1e-12) * 1.05;
        for (p, panel) in d.pairs.iter().zip(&panels) {
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!(
                        "{}–{}  (Spearman {:.2})",
                        d.names[p.a], d.names[p.b], p.spearman
                    ),
                    ("sans-serif", 15),
                )
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(-1.0f64..1.0, 0.0..vmax)
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc("cosine")
                .y_desc("volume")
                .label_style(("sans-serif", 11))
                .draw()
                .map_err(e)?;
            let c = colour(2);
            chart
                .draw_series(
                    p.cosines
                        .iter()
                        .zip(&vols)
                        .map(|(&x, &y)| Circle::new((x as f64, y as f64), 2, c.mix(0.5).filled())),
                )
                .map_err(e)?;
        }
        Ok(())
    }
}

/// The 2-D PCA map of the sampled embeddings, one colour per modality.
pub struct Map<'a> {
    pub diag: &'a Diagnostics,
    pub title: String,
}

impl Plot for Map<'_> {
    fn size(&self) -> (u32, u32) {
        (560, 520)
    }
    fn draw<DB: DrawingBackend>(&self, area: &Area<DB>) -> Result<(), String> {
        let d = self.diag;
        let lim = d
            .map
            .iter()
            .flat_map(|(_, c)| [c[0].abs(), c[1].abs()])
            .fold(1e-6f32, f32::max) as f64
            * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(-lim..lim, -lim..lim)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "PC1 ({:.1}% of variance)",
                100.0 * d.map_explained[0]
            ))
            .y_desc(format!("PC2 ({:.1}%)", 100.0 * d.map_explained[1]))
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(e)?;
        for (t, name) in d.names.iter().enumerate() {
            let c = colour(t);
            chart
                .draw_series(
                    d.map.iter().filter(|(m, _)| *m == t).map(|(_, p)| {
                        Circle::new((p[0] as f64, p[1] as f64), 2, c.mix(0.6).filled())
                    }),
                )
                .map_err(e)?
                .label(name.as_str())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 13)
    }
}

/// A curve: its label and one value per step.
pub type Series = (String, Vec<f64>);

/// Metrics over training steps: one panel (title, curves) per metric group.
pub struct Curves<'a> {
    pub steps: &'a [u64],
    pub panels: Vec<(String, Vec<Series>)>,
}

impl Plot for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 300 * self.panels.len().div_ceil(2).max(1) as u32)
    }
    fn draw<DB: DrawingBackend>(&self, area: &Area<DB>) -> Result<(), String> {
        let rows = self.panels.len().div_ceil(2).max(1);
        let areas = area.split_evenly((rows, 2));
        let x_hi = (*self.steps.last().unwrap_or(&1)).max(1) as f64;
        for ((title, series), panel) in self.panels.iter().zip(&areas) {
            let vals = series.iter().flat_map(|s| s.1.iter().copied());
            let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
            let (y_lo, y_hi) = y_range_with_legend_band(lo, hi, series.len());
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(52)
                .build_cartesian_2d(0.0..x_hi, y_lo..y_hi)
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc("step")
                .x_labels(step_label_count(x_hi))
                .x_label_formatter(&|x| step_label(*x))
                .label_style(("sans-serif", 11))
                .draw()
                .map_err(e)?;
            for (s, (label, ys)) in series.iter().enumerate() {
                let c = colour(s);
                let pts: Vec<(f64, f64)> = self
                    .steps
                    .iter()
                    .map(|&x| x as f64)
                    .zip(ys.iter().copied())
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(e)?
                    .label(label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 14, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                    .map_err(e)?;
            }
            legend(&mut chart, SeriesLabelPosition::UpperRight, 11)?;
        }
        Ok(())
    }
}

/// Height of a curves panel's plotting area in pixels (300 per row, less caption and labels)
/// and of one legend entry: what the legend band must hold.
const PANEL_PLOT_PX: f64 = 230.0;
const LEGEND_ENTRY_PX: f64 = 16.0;

/// The y range of a curves panel whose data span [lo, hi]: 10 % padding below, and above the
/// data a band tall enough for the legend of `entries` series (drawn in the upper right), so
/// the legend never covers a curve.
fn y_range_with_legend_band(lo: f64, hi: f64, entries: usize) -> (f64, f64) {
    let pad = ((hi - lo) * 0.1).max(1e-9);
    let (y_lo, data_top) = (lo - pad, hi + pad);
    let band = ((entries as f64 * LEGEND_ENTRY_PX + 12.0) / PANEL_PLOT_PX).min(0.6);
    (y_lo, data_top + (data_top - y_lo) * band / (1.0 - band))
}

/// Step-axis labels: integers (steps are counts), at most 6, never more than there are steps.
fn step_label_count(x_hi: f64) -> usize {
    (x_hi as usize).clamp(1, 6)
}

fn step_label(x: f64) -> String {
    format!("{}", x.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_band_lies_above_every_curve() {
        for (lo, hi, entries) in [(0.0, 1.0, 2), (-3.0, 7.5, 4), (5.0, 5.0, 1), (0.1, 0.2, 8)] {
            let (y_lo, y_hi) = y_range_with_legend_band(lo, hi, entries);
            // The legend's share of the panel height, from the top.
            let legend_px = entries as f64 * LEGEND_ENTRY_PX + 12.0;
            let legend_bottom = y_hi - (y_hi - y_lo) * legend_px / PANEL_PLOT_PX;
            assert!(
                y_lo < lo && hi < legend_bottom,
                "{lo}..{hi}, {entries}: legend from {legend_bottom}"
            );
        }
    }

    #[test]
    fn step_labels_are_integers() {
        assert_eq!(step_label(50.0), "50");
        assert_eq!(step_label(99.999_999), "100");
        assert_eq!(step_label_count(3.0), 3);
        assert_eq!(step_label_count(1000.0), 6);
    }

    #[test]
    fn a_curves_svg_has_integer_step_labels() {
        let steps: Vec<u64> = (1..=8).map(|s| s * 25).collect();
        let ys: Vec<f64> = steps.iter().map(|&s| 1.0 / s as f64).collect();
        let curves = Curves {
            steps: &steps,
            panels: vec![(
                "loss".into(),
                vec![("train".into(), ys.clone()), ("val".into(), ys)],
            )],
        };
        register_font();
        let mut svg = String::new();
        {
            let area = SVGBackend::with_string(&mut svg, curves.size()).into_drawing_area();
            curves.draw(&area).unwrap();
            area.present().unwrap();
        }
        let texts: Vec<&str> = svg
            .split("</text>")
            .filter_map(|t| t.rsplit('>').next().map(str::trim))
            .collect();
        assert!(texts.contains(&"100"), "an integer step label: {texts:?}");
        assert!(
            !texts.contains(&"100.0") && !texts.contains(&"50.0"),
            "{texts:?}"
        );
    }
}
