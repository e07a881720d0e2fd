//! The `gram` subcommands as functions: load and check inputs, compute, write atomically.
//! Every failure is a [`crate::error::Error`] whose message names the flag or file and the problem.

use crate::cpu::{CpuStats, Scorer};
use crate::error::{Arg, Error};
use crate::input::{self, Matrix, View};
use crate::metrics::{self, Retrieval};
use crate::missing::MissingRule;
use crate::output;
use gram_nostd::{GramError, LossParts, Ties, gram_loss};
use std::path::Path;
use std::time::{Duration, Instant};

/// The inputs of every computation: an anchor [N1, D] and 1..=15 modalities [N2, D], row j
/// of every modality belonging to candidate j. Borrowed, so files and other programs' buffers
/// go through the same checks and the same code.
pub struct Batch<'a> {
    pub anchor: View<'a>,
    pub modalities: Vec<View<'a>>,
}

/// The count of modalities is checked before any file is opened.
pub(crate) fn check_modality_count(n: usize) -> Result<(), Error> {
    if n == 0 {
        return Err(Error::missing(
            Arg::Modality,
            "need at least one modality besides the anchor",
        ));
    }
    if n + 1 > gram_nostd::MAX_K {
        return Err(Error::Usage(
            format!(
                "{n} modalities given; at most {} are supported",
                gram_nostd::MAX_K - 1
            )
            .to_string(),
        ));
    }
    Ok(())
}

impl<'a> Batch<'a> {
    /// Checks that the views fit together (count, dimension, rows). Each view's own shape and
    /// finiteness are the caller's to check ([`View::validate`]; files are checked on load).
    pub fn new(anchor: View<'a>, modalities: Vec<View<'a>>) -> Result<Batch<'a>, Error> {
        check_modality_count(modalities.len())?;
        for m in &modalities {
            if m.cols != anchor.cols {
                return Err(Error::data(
                    m.name,
                    format!(
                        "dimension {} does not match the dimension of the anchor, {} ({})",
                        m.cols, anchor.name, anchor.cols
                    ),
                ));
            }
            if m.rows != modalities[0].rows {
                return Err(Error::data(
                    m.name,
                    format!(
                        "{} rows, but {} has {} (row j of every modality belongs to candidate j)",
                        m.rows, modalities[0].name, modalities[0].rows
                    ),
                ));
            }
        }
        Ok(Batch { anchor, modalities })
    }

    /// Number of candidates (rows of each modality).
    pub fn candidates(&self) -> usize {
        self.modalities[0].rows
    }

    pub fn scorer(&self) -> Result<Scorer<'a>, Error> {
        let views: Vec<&'a [f32]> = self.modalities.iter().map(|m| m.data).collect();
        Scorer::new(&views, self.candidates(), self.anchor.cols).map_err(|e| self.compute_error(e))
    }

    fn compute_error(&self, e: GramError) -> Error {
        let what = match e {
            GramError::OutOfRange => {
                "a volume exceeds the float32 range (inputs of huge magnitude)".to_string()
            }
            other => other.to_string(),
        };
        Error::data(self.anchor.name, what.to_string())
    }

    fn require_square(&self) -> Result<(), Error> {
        let n2 = self.candidates();
        if self.anchor.rows != n2 {
            return Err(Error::data(
                self.anchor.name,
                format!(
                    "{} rows, but the modalities have {} (eval, loss and report pair row i of the anchor with row i of each modality)",
                    self.anchor.rows, n2
                ),
            ));
        }
        Ok(())
    }

    /// The row-major N1×N2 volume matrix in f32 (the CPU backend's accuracy contract: 1e-5
    /// relative to the exact volume, or a gram-gpu adapter's).
    pub fn volume_matrix(&self, backend: Backend) -> Result<(Vec<f32>, CpuStats), Error> {
        match backend {
            Backend::Cpu => {
                let scorer = self.scorer()?;
                let mut v = vec![0.0f32; self.anchor.rows * self.candidates()];
                let stats = scorer
                    .volume_matrix(self.anchor.data, &mut v)
                    .map_err(|e| self.compute_error(e))?;
                Ok((v, stats))
            }
            #[cfg(feature = "gpu")]
            Backend::Gpu => Ok((
                self.with_gpu(|s| s.volume_matrix(self.anchor.data))?,
                CpuStats::default(),
            )),
            #[cfg(not(feature = "gpu"))]
            Backend::Gpu => no_gpu(),
        }
    }

    /// For every anchor row, the `k` candidates of smallest volume as (index, volume),
    /// ascending, ties by index. Never holds the N1×N2 matrix.
    pub fn top_k(&self, k: usize, backend: Backend) -> Result<Vec<Vec<(u32, f32)>>, Error> {
        let n2 = self.candidates();
        if k == 0 || k > n2 {
            return Err(Error::argument(
                Arg::TopK,
                k,
                format!("must be between 1 and the number of candidates ({n2})"),
            ));
        }
        match backend {
            Backend::Cpu => {
                let scorer = self.scorer()?;
                metrics::top_k(&scorer, self.anchor.data, k).map_err(|e| self.compute_error(e))
            }
            #[cfg(feature = "gpu")]
            Backend::Gpu => {
                if k > gram_gpu::MAX_TOP_K {
                    return Err(Error::argument(
                        Arg::TopK,
                        k,
                        format!("the GPU backend supports at most {}", gram_gpu::MAX_TOP_K),
                    ));
                }
                self.with_gpu(|s| s.top_k(self.anchor.data, k))
            }
            #[cfg(not(feature = "gpu"))]
            Backend::Gpu => no_gpu(),
        }
    }

    /// `f` over the anchor's values once the batch is known to be square (row i of the
    /// anchor pairs with candidate i), its errors named like every other.
    pub fn square<T>(&self, f: impl FnOnce(&[f32]) -> Result<T, GramError>) -> Result<T, Error> {
        self.require_square()?;
        f(self.anchor.data).map_err(|e| self.compute_error(e))
    }

    /// Retrieval metrics of a square batch (row i of the anchor pairs with candidate i), a
    /// candidate tied with the ground truth ranked by `ties`.
    pub fn evaluate(&self, ties: Ties) -> Result<Retrieval, Error> {
        let scorer = self.scorer()?;
        self.square(|a| metrics::evaluate_with(&scorer, a, self.anchor.cols, ties).map(|(r, _)| r))
    }

    /// The GRAM loss of a square batch over the volume matrix in f64 (V within the 1e-5
    /// contract, not rounded to f32 on top; within 1e-8 of the exact loss on the reference
    /// batch); `grad` (length B²) receives ∂loss/∂V.
    pub fn loss(
        &self,
        temperature: f64,
        label_smoothing: f64,
        grad: Option<&mut [f64]>,
    ) -> Result<LossParts, Error> {
        check_loss_parameters(temperature, label_smoothing)?;
        self.require_square()?;
        let scorer = self.scorer()?;
        let b = self.anchor.rows;
        let mut v = vec![0.0f64; b * b];
        scorer
            .volume_matrix(self.anchor.data, &mut v)
            .map_err(|e| self.compute_error(e))?;
        gram_loss(&v, b, temperature, label_smoothing, grad).map_err(|e| self.compute_error(e))
    }

    #[cfg(feature = "gpu")]
    fn with_gpu<T>(
        &self,
        f: impl FnOnce(&gram_gpu::GpuScorer) -> Result<T, gram_gpu::GpuError>,
    ) -> Result<T, Error> {
        let gpu_error = |e| match e {
            gram_gpu::GpuError::Input(e) => self.compute_error(e),
            other => Error::Gpu(other.to_string()),
        };
        let ctx = gram_gpu::GpuContext::new().map_err(gpu_error)?;
        let views: Vec<&[f32]> = self.modalities.iter().map(|m| m.data).collect();
        let scorer = gram_gpu::GpuScorer::new(&ctx, &views, self.candidates(), self.anchor.cols)
            .map_err(gpu_error)?;
        f(&scorer).map_err(gpu_error)
    }
}

/// `--temperature` and `--label-smoothing` as the loss needs them.
pub fn check_loss_parameters(temperature: f64, label_smoothing: f64) -> Result<(), Error> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::argument(
            Arg::Temperature,
            temperature,
            "must be a positive number",
        ));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::argument(
            Arg::LabelSmoothing,
            label_smoothing,
            "must be in [0, 1]",
        ));
    }
    Ok(())
}

/// The files of a subcommand, read and checked.
pub struct Inputs {
    pub anchor: Matrix,
    pub modalities: Vec<Matrix>,
    /// Per modality: rows that were missing (rows of NaN, completed by the rule).
    pub missing_rows: Vec<usize>,
    pub read_time: Duration,
}

impl Inputs {
    /// Read and check the files. With `missing`, a row of NaN in a modality file marks a
    /// missing vector, completed by the rule ([`crate::missing`]); without, it is refused.
    pub fn load(
        anchor: &str,
        modalities: &[String],
        missing: Option<MissingRule>,
    ) -> Result<Inputs, Error> {
        let t = Instant::now();
        check_modality_count(modalities.len())?;
        let anchor = input::load(anchor)?;
        let mut missing_rows = vec![0; modalities.len()];
        let (anchor, modalities) = match missing {
            None => {
                let mods = modalities
                    .iter()
                    .map(|m| input::load(m))
                    .collect::<Result<Vec<_>, _>>()?;
                (anchor, mods)
            }
            Some(rule) => {
                let mods = modalities
                    .iter()
                    .map(|m| input::load_allowing_missing(m))
                    .collect::<Result<Vec<_>, _>>()?;
                // Shapes first, so that a mismatch is named as without --missing.
                Batch::new(anchor.view(), mods.iter().map(|(m, _)| m.view()).collect())?;
                for (count, (_, lacks)) in missing_rows.iter_mut().zip(&mods) {
                    *count = lacks.iter().filter(|&&x| x).count();
                }
                crate::missing::complete(&anchor, &mods, rule)?
            }
        };
        let inputs = Inputs {
            anchor,
            modalities,
            missing_rows,
            read_time: t.elapsed(),
        };
        inputs.batch()?;
        Ok(inputs)
    }

    pub fn batch(&self) -> Result<Batch<'_>, Error> {
        Batch::new(
            self.anchor.view(),
            self.modalities.iter().map(Matrix::view).collect(),
        )
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

/// Where volumes are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    /// wgpu (needs the `gpu` feature and an adapter).
    Gpu,
}

#[cfg(not(feature = "gpu"))]
pub(crate) fn no_gpu<T>() -> Result<T, Error> {
    Err(Error::Gpu(
        "this gram was built without the `gpu` feature".into(),
    ))
}

pub fn score(
    anchor: &str,
    modalities: &[String],
    missing: Option<MissingRule>,
    out: &Path,
    backend: Backend,
) -> Result<ScoreReport, Error> {
    let inputs = Inputs::load(anchor, modalities, missing)?;
    let batch = inputs.batch()?;
    let t = Instant::now();
    let (n1, n2) = (batch.anchor.rows, batch.candidates());
    let cannot_write = |e: std::io::Error| Error::io(out.display(), format!("cannot write: {e}"));
    let (stats, compute, write) = match backend {
        // Each tile of rows goes to the file as soon as it is computed (`output::NpyRows`), so
        // `compute` includes handing blocks to the system and `write` is the final fsync.
        Backend::Cpu => {
            let file = output::NpyRows::create(out, n1, n2).map_err(cannot_write)?;
            let stats = batch
                .scorer()?
                .volume_blocks(batch.anchor.data, |row, block: &[f32]| {
                    file.write_rows(row, block).map_err(ScoreFail::Io)
                })
                .map_err(|e| match e {
                    ScoreFail::Gram(e) => batch.compute_error(e),
                    ScoreFail::Io(e) => cannot_write(e),
                })?;
            let compute = t.elapsed();
            let t = Instant::now();
            file.commit().map_err(cannot_write)?;
            (stats, compute, t.elapsed())
        }
        Backend::Gpu => {
            let (v, stats) = batch.volume_matrix(backend)?;
            let compute = t.elapsed();
            let t = Instant::now();
            output::write_npy_f32(out, &[n1, n2], &v).map_err(cannot_write)?;
            (stats, compute, t.elapsed())
        }
    };
    Ok(ScoreReport {
        shape: (n1, n2),
        read: inputs.read_time,
        compute,
        write,
        stats,
    })
}

/// Why a streamed volume matrix stopped.
enum ScoreFail {
    Gram(GramError),
    Io(std::io::Error),
}

impl From<GramError> for ScoreFail {
    fn from(e: GramError) -> ScoreFail {
        ScoreFail::Gram(e)
    }
}

/// For every anchor row, the `k` candidates of smallest volume: writes `OUT/indices.npy`
/// (uint32 [N1, k]) and `OUT/volumes.npy` (float32 [N1, k]), ascending, ties by index. Never
/// holds the N1×N2 matrix (CPU: bounded lists per row; GPU: candidate blocks streamed).
pub fn search(
    anchor: &str,
    modalities: &[String],
    missing: Option<MissingRule>,
    k: usize,
    out: &Path,
    backend: Backend,
) -> Result<(), Error> {
    let inputs = Inputs::load(anchor, modalities, missing)?;
    let rows = inputs.batch()?.top_k(k, backend)?;
    let keys: Vec<Vec<u64>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|&(j, v)| crate::cpu::topk::key(j, v))
                .collect()
        })
        .collect();
    crate::hits::write(out, &keys, k)
}

/// [`search`] over one or more indexes (`gram index build`) of disjoint rows: hits are global
/// rows of the indexed files, the same as a search over those files.
pub fn search_index(
    anchor: &str,
    indexes: &[std::path::PathBuf],
    k: usize,
    out: &Path,
    backend: Backend,
) -> Result<(crate::index::SearchReport, Duration), Error> {
    let t = Instant::now();
    let index = crate::index::Index::open(indexes)?;
    let queries = input::load(anchor)?;
    let open = t.elapsed();
    let (keys, report) = crate::index::search_keys(&index, queries.view(), k, backend)?;
    crate::hits::write(out, &keys, k)?;
    Ok((report, open))
}

/// What `gram search --approx` did.
pub struct ApproxSearch {
    pub queries: usize,
    pub certified: usize,
    pub report: crate::index::ann::ApproxReport,
}

/// [`search_index`], approximately ([`crate::index::ann::search`]); also writes
/// `OUT/bound.npy` and `OUT/certified.npy`.
pub fn search_approx(
    anchor: &str,
    indexes: &[std::path::PathBuf],
    k: usize,
    opts: crate::index::ann::ApproxOptions,
    out: &Path,
) -> Result<ApproxSearch, Error> {
    let index = crate::index::Index::open(indexes)?;
    let anns = crate::index::ann::open(&index)?;
    let queries = input::load(anchor)?;
    let (hits, report) = crate::index::ann::search(&index, &anns, queries.view(), k, opts)?;
    let certified = crate::hits::write_approx(out, &hits.keys, k, &hits.bound_sq)?;
    Ok(ApproxSearch {
        queries: hits.keys.len(),
        certified,
        report,
    })
}

pub fn eval(
    anchor: &str,
    modalities: &[String],
    missing: Option<MissingRule>,
    ties: Ties,
) -> Result<Retrieval, Error> {
    Inputs::load(anchor, modalities, missing)?
        .batch()?
        .evaluate(ties)
}

/// The GRAM loss of the batch in the files (see [`Batch::loss`]).
pub fn loss(
    anchor: &str,
    modalities: &[String],
    missing: Option<MissingRule>,
    temperature: f64,
    label_smoothing: f64,
) -> Result<LossParts, Error> {
    check_loss_parameters(temperature, label_smoothing)?;
    Inputs::load(anchor, modalities, missing)?
        .batch()?
        .loss(temperature, label_smoothing, None)
}
