//! One embedding set's alignment diagnostics: every number and point series a report shows.

use super::stats::{mutual_knn, pca2, row_cosines, separation_auc, spearman, subsample, unit_rows};
use crate::commands::Batch;
use crate::error::Error;
use crate::metrics::{self, Retrieval};
use gram_nostd::summarize_ranks;

/// Mutual k-NN uses k = 10 neighbours, as in Huh et al. (2024).
pub const KNN: usize = 10;

/// Limits on what is plotted (metrics always use every row).
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    /// Rows whose volume matrix gives the negatives, and whose vectors give cosines, mutual
    /// k-NN and the map (evenly spaced; see [`subsample`]).
    pub rows: usize,
    /// Points per modality on the 2-D map.
    pub map_rows: usize,
}

impl Default for Sampling {
    fn default() -> Sampling {
        Sampling {
            rows: 2000,
            map_rows: 500,
        }
    }
}

/// One pair of modalities (indices into the batch's vectors: 0 = anchor).
#[derive(Clone, Debug)]
pub struct PairStats {
    pub a: usize,
    pub b: usize,
    /// cos(x_a\[i\], x_b\[i\]) of each sampled positive.
    pub cosines: Vec<f32>,
    /// Spearman correlation of those cosines with the positives' volumes.
    pub spearman: f64,
    pub mutual_knn: f64,
}

/// Everything a report shows about one embedding set.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    pub names: Vec<String>,
    pub n: usize,
    pub dim: usize,
    pub retrieval: Retrieval,
    pub ranks_a2d: Vec<u32>,
    pub ranks_d2a: Vec<u32>,
    /// V[i, i] for every row.
    pub positives: Vec<f32>,
    /// Off-diagonal volumes of the sampled rows' volume matrix.
    pub negatives: Vec<f32>,
    /// P(negative > positive) (see [`separation_auc`]).
    pub auc: f64,
    /// Mean over anchors of the smallest volume in their row (the published evaluation's
    /// logged "gramian value").
    pub mean_row_min: f64,
    /// The sampled rows (indices into 0..n).
    pub sample: Vec<usize>,
    pub pairs: Vec<PairStats>,
    /// (modality index, PCA coordinates) of the map's points.
    pub map: Vec<(usize, [f32; 2])>,
    pub map_explained: [f64; 2],
}

impl Diagnostics {
    /// Diagnose a square batch whose vectors are named `names` (anchor first).
    pub fn new(
        batch: &Batch,
        names: &[String],
        sampling: Sampling,
        progress: &dyn Fn(&str),
    ) -> Result<Diagnostics, Error> {
        let (n, d) = (batch.anchor.rows, batch.anchor.cols);
        progress("ranks (every row)");
        let scorer = batch.scorer()?;
        let ranks =
            batch.square(|a| metrics::ranks_full(&scorer, a, d, gram_nostd::Ties::Pessimistic))?;
        let retrieval = Retrieval {
            anchor_to_data: summarize_ranks(&mut ranks.anchor_to_data.clone())
                .map_err(|e| Error::data(batch.anchor.name, e.to_string()))?,
            data_to_anchor: summarize_ranks(&mut ranks.data_to_anchor.clone())
                .map_err(|e| Error::data(batch.anchor.name, e.to_string()))?,
        };
        progress("negatives (sampled rows)");
        let sample = subsample(n, sampling.rows);
        let vectors: Vec<&[f32]> = std::iter::once(batch.anchor.data)
            .chain(batch.modalities.iter().map(|m| m.data))
            .collect();
        let rows_of = |x: &[f32], idx: &[usize]| -> Vec<f32> {
            idx.iter()
                .flat_map(|&i| &x[i * d..(i + 1) * d])
                .copied()
                .collect()
        };
        let sampled: Vec<Vec<f32>> = vectors.iter().map(|x| rows_of(x, &sample)).collect();
        let negatives = sampled_negatives(batch, &sampled, d)?;
        let auc = separation_auc(&ranks.positives, &negatives);
        progress("modality pairs: cosines, mutual k-NN");
        let unit: Vec<Vec<f32>> = sampled.iter().map(|x| unit_rows(x, d)).collect();
        let pos_sampled: Vec<f32> = sample.iter().map(|&i| ranks.positives[i]).collect();
        let mut pairs = vec![];
        for a in 0..vectors.len() {
            for b in a + 1..vectors.len() {
                let cosines = row_cosines(&unit[a], &unit[b], d);
                pairs.push(PairStats {
                    a,
                    b,
                    spearman: spearman(&cosines, &pos_sampled),
                    mutual_knn: mutual_knn(&unit[a], &unit[b], d, KNN),
                    cosines,
                });
            }
        }
        progress("2-D map (PCA)");
        let map_idx = subsample(sample.len(), sampling.map_rows);
        let points: Vec<f32> = sampled.iter().flat_map(|x| rows_of(x, &map_idx)).collect();
        let (coords, map_explained) = pca2(&points, d);
        let map = coords
            .into_iter()
            .enumerate()
            .map(|(p, c)| (p / map_idx.len(), c))
            .collect();
        Ok(Diagnostics {
            names: names.to_vec(),
            n,
            dim: d,
            retrieval,
            mean_row_min: ranks.row_min.iter().map(|&v| v as f64).sum::<f64>() / n as f64,
            ranks_a2d: ranks.anchor_to_data,
            ranks_d2a: ranks.data_to_anchor,
            positives: ranks.positives,
            negatives,
            auc,
            sample,
            pairs,
            map,
            map_explained,
        })
    }

    /// The numbers (no point series) as JSON.
    pub fn summary_json(&self) -> serde_json::Value {
        let pairs: Vec<_> = self
            .pairs
            .iter()
            .map(|p| {
                serde_json::json!({
                    "a": self.names[p.a], "b": self.names[p.b],
                    "mutual_knn": p.mutual_knn, "spearman_cosine_volume": p.spearman,
                })
            })
            .collect();
        serde_json::json!({
            "n": self.n, "dim": self.dim, "modalities": self.names,
            "retrieval": self.retrieval.to_json(),
            "separation_auc": self.auc,
            "mean_row_min_volume": self.mean_row_min,
            "mean_positive_volume": self.positives.iter().map(|&v| v as f64).sum::<f64>() / self.n as f64,
            "pairs": pairs,
            "sampled_rows": self.sample.len(),
            "pca_explained": self.map_explained,
        })
    }
}

/// Off-diagonal entries of the sampled rows' volume matrix. Recomputed rather than kept from
/// the ranks pass, which streams tiles and never holds N×N: at most `Sampling::rows`² pairs.
fn sampled_negatives(batch: &Batch, sampled: &[Vec<f32>], d: usize) -> Result<Vec<f32>, Error> {
    use crate::input::View;
    let s = sampled[0].len() / d;
    let names: Vec<String> = std::iter::once(batch.anchor.name)
        .chain(batch.modalities.iter().map(|m| m.name))
        .map(|n| format!("{n} (sampled rows)"))
        .collect();
    let view = |t: usize| View {
        name: &names[t],
        rows: s,
        cols: d,
        data: &sampled[t],
    };
    let sub = Batch::new(view(0), (1..sampled.len()).map(view).collect())?;
    let (v, _) = sub.volume_matrix(crate::commands::Backend::Cpu)?;
    Ok(v.iter()
        .enumerate()
        .filter(|(e, _)| e / s != e % s)
        .map(|(_, &x)| x)
        .collect())
}
