//! The `gram` command line: argument parsing (clap) and dispatch to [`crate::commands`].
//! In the library so the parser can be tested and fuzzed without spawning the binary.

use crate::commands;
use crate::error::Error;
use crate::index::ann::ApproxOptions;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gram",
    version,
    about = "GRAM volumes over embedding files: vol = sqrt(det AᵀA) of (anchor, modality 1, …)",
    long_about = "GRAM volumes over embedding files: vol = sqrt(det AᵀA) of (anchor, modality 1, …).\n\n\
Inputs are .npy (float32, float64 or float16, C order) or FILE.safetensors:TENSOR, shaped [N, D].\n\
Row j of every --modality belongs to candidate j. Bad input prints one `error:` line naming the\n\
file and exits with status 2, leaving no output file."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// Multi-threaded CPU: f32 GEMM cross dots, per-pair error bound, accurate fallback.
    Cpu,
    /// wgpu compute (Vulkan, Metal, DX12): per-pair projection residuals in WGSL.
    Gpu,
}

impl From<Backend> for commands::Backend {
    fn from(b: Backend) -> commands::Backend {
        match b {
            Backend::Cpu => commands::Backend::Cpu,
            Backend::Gpu => commands::Backend::Gpu,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TiesArg {
    Pessimistic,
    Optimistic,
    Stable,
}

impl From<TiesArg> for gram_nostd::Ties {
    fn from(t: TiesArg) -> gram_nostd::Ties {
        match t {
            TiesArg::Pessimistic => gram_nostd::Ties::Pessimistic,
            TiesArg::Optimistic => gram_nostd::Ties::Optimistic,
            TiesArg::Stable => gram_nostd::Ties::Stable,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum MissingArg {
    /// The volume of the vectors present (incomplete candidates rank behind).
    Present,
    /// That volume times the median distance the missing modality adds on complete candidates.
    Scaled,
    /// The missing vector replaced by the modality's mean present vector (median norm).
    Mean,
}

impl From<MissingArg> for crate::missing::MissingRule {
    fn from(m: MissingArg) -> Self {
        match m {
            MissingArg::Present => Self::Present,
            MissingArg::Scaled => Self::Scaled,
            MissingArg::Mean => Self::Mean,
        }
    }
}

#[derive(clap::Args)]
struct Embeddings {
    /// Anchor embeddings [N1, D] (.npy or FILE.safetensors:TENSOR).
    #[arg(long, value_name = "FILE")]
    anchor: String,
    /// A modality's embeddings [N2, D]; repeat for k − 1 modalities (1..=15).
    #[arg(long = "modality", value_name = "FILE", required = true)]
    modalities: Vec<String>,
    /// Accept a row of NaN in a modality file as a missing vector, scored by this rule
    /// (without it such a row is refused).
    #[arg(long, value_enum, value_name = "RULE")]
    missing: Option<MissingArg>,
}

impl Embeddings {
    fn missing(&self) -> Option<crate::missing::MissingRule> {
        self.missing.map(Into::into)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Write the volume matrix V[i, j] = vol(A[i], M1[j], M2[j], …) as float32 [N1, N2] .npy.
    #[command(
        after_help = "Example:\n  gram score --anchor text.npy --modality video.npy --modality audio.npy --out V.npy"
    )]
    Score {
        #[command(flatten)]
        inputs: Embeddings,
        /// Output .npy (written to a temporary file and renamed when complete).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// Print read/compute/write times and fallback counts to stderr.
        #[arg(short, long)]
        verbose: bool,
    },
    /// The k smallest volumes per anchor, without materialising the N1×N2 matrix: writes
    /// OUT/indices.npy (uint32 [N1, k]) and OUT/volumes.npy (float32 [N1, k]), ascending.
    #[command(
        after_help = "Ties are broken by the smaller candidate index, on every backend.\n\n\
Example:\n  gram search --anchor queries.npy --modality video.npy --modality audio.npy --top-k 10 --out hits"
    )]
    Search(SearchArgs),
    /// Build a search index: factor the candidates once and store them with their vectors in
    /// safetensors shards and a manifest (sizes, xxh3-64 checksums, sources).
    #[command(subcommand)]
    Index(IndexCommand),
    /// Merge hit directories of searches over disjoint candidates (index shards searched on
    /// several machines): the k best per anchor, as one search over all candidates gives.
    #[command(
        after_help = "Example:\n  gram merge --hits hits-0 --hits hits-1 --top-k 10 --out hits"
    )]
    Merge {
        /// A hit directory (indices.npy, volumes.npy) of `gram search`; repeat.
        #[arg(long = "hits", value_name = "DIR", required = true)]
        hits: Vec<PathBuf>,
        #[arg(long, value_name = "K")]
        top_k: usize,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Retrieval R@1/5/10, median and mean rank in both directions (row i of the anchor belongs
    /// with row i of each modality; N1 = N2).
    #[command(
        after_help = "Ranks are 1-based, by ascending volume. By default ties never flatter the model: every\n\
other candidate with a volume ≤ the ground truth's counts as ranked ahead of it (--ties). Recall is\n\
in percent.\n\n\
Example:\n  gram eval --anchor text.npy --modality video.npy --modality audio.npy --json"
    )]
    Eval {
        #[command(flatten)]
        inputs: Embeddings,
        /// How a candidate whose volume equals the ground truth's is ranked: pessimistic (ahead
        /// of it), optimistic (behind it), stable (ahead when its index is lower: the order of a
        /// stable ascending sort, as the published evaluation's argsort).
        #[arg(long, value_enum, default_value = "pessimistic")]
        ties: TiesArg,
        /// Print {\"anchor_to_data\":{\"r1\",\"r5\",\"r10\",\"medr\",\"meanr\"},\"data_to_anchor\":{…}}.
        #[arg(long)]
        json: bool,
    },
    /// The GRAM contrastive loss (CE(−V/τ) over rows and over columns, averaged) of the batch.
    #[command(
        after_help = "Example:\n  gram loss --anchor text.npy --modality video.npy --modality audio.npy --temperature 0.07 --json"
    )]
    Loss {
        #[command(flatten)]
        inputs: Embeddings,
        #[arg(long, default_value_t = 0.07)]
        temperature: f64,
        #[arg(long, default_value_t = 0.1)]
        label_smoothing: f64,
        /// Print {\"loss\":…,\"anchor_to_data\":…,\"data_to_anchor\":…}.
        #[arg(long)]
        json: bool,
    },
    /// Alignment diagnostics and plots: OUT/report.html (self-contained) and every plot as PNG
    /// and SVG — of one embedding set (--anchor/--modality), or over training (--snapshots).
    #[command(
        after_help = "Shows retrieval (R@1/5/10, MedR, MeanR, rank histogram), positive vs negative volumes
(separation AUC), cosine vs volume of the positives per modality pair, mutual k-NN alignment (k = 10),
the mean over anchors of the smallest volume in their row, and a PCA map by modality. Metrics use
every row; plots use --sample evenly spaced rows. --snapshots DIR reads <step>_<modality>.npy files
(as `gram-train fit --snapshot-every N` writes them) and draws every metric over the steps.

Examples:
  gram report --anchor text.npy --modality video.npy --modality audio.npy --out report
  gram report --snapshots run/snapshots --anchor-modality text --out report --json"
    )]
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Anchor embeddings [N, D] (with --modality; or use --snapshots).
    #[arg(long, value_name = "FILE", required_unless_present = "snapshots")]
    anchor: Option<String>,
    /// A modality's embeddings [N, D]; repeat for each.
    #[arg(long = "modality", value_name = "FILE", requires = "anchor")]
    modalities: Vec<String>,
    /// A directory of <step>_<modality>.npy training snapshots.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["anchor", "modalities", "names"])]
    snapshots: Option<PathBuf>,
    /// With --snapshots: the anchor modality (default: text if present, else the first name).
    #[arg(long, value_name = "NAME", requires = "snapshots")]
    anchor_modality: Option<String>,
    /// Names of the anchor and each modality, comma-separated (default: the file stems).
    #[arg(long, value_name = "A,M1,…", value_delimiter = ',')]
    names: Option<Vec<String>>,
    /// Rows sampled (evenly spaced) for the plots, negatives, cosines and mutual k-NN.
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(11..=20000))]
    sample: u64,
    /// Output directory (replaced only if it holds a previous report).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// With --modality: accept a row of NaN as a missing vector, scored by this rule; the
    /// report says how many rows each modality misses.
    #[arg(long, value_enum, value_name = "RULE", requires = "anchor")]
    missing: Option<MissingArg>,
}

#[derive(clap::Args)]
struct SearchArgs {
    /// Query embeddings [N1, D] (.npy or FILE.safetensors:TENSOR).
    #[arg(long, value_name = "FILE")]
    anchor: String,
    /// A modality's embeddings [N2, D]; repeat for k − 1 modalities (or use --index).
    #[arg(
        long = "modality",
        value_name = "FILE",
        required_unless_present = "index",
        conflicts_with = "index"
    )]
    modalities: Vec<String>,
    /// An index directory (`gram index build`); repeat to search indexes of disjoint rows
    /// together. Hit indices are then rows of the indexed files.
    #[arg(long = "index", value_name = "DIR")]
    index: Vec<PathBuf>,
    /// With --modality: accept a row of NaN as a missing vector, scored by this rule.
    #[arg(long, value_enum, value_name = "RULE", conflicts_with = "index")]
    missing: Option<MissingArg>,
    #[arg(long, value_name = "K")]
    top_k: usize,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
    /// Print timings and fallback counts to stderr (with --index).
    #[arg(short, long)]
    verbose: bool,
    /// With --index built with --ann: search approximately (probed cells, the low-w list, the
    /// best estimates re-scored exactly). Also writes OUT/certified.npy (uint8 [N1]: 1 where the
    /// top-k is certified exact) and OUT/bound.npy (float64 [N1]: a lower bound on the volume of
    /// every candidate not scored exactly).
    #[arg(long, requires = "index")]
    approx: bool,
    /// With --approx: cells probed per shard (more: higher recall, slower).
    #[arg(long, value_name = "N", requires = "approx", default_value_t = ApproxOptions::default().probe)]
    probe: usize,
    /// With --approx: the candidates of smallest vol(modalities) estimated for every query, per shard.
    #[arg(long, value_name = "N", requires = "approx", default_value_t = ApproxOptions::default().low_w)]
    low_w: usize,
    /// With --approx: best estimates re-scored exactly, per shard (at least --top-k).
    #[arg(long, value_name = "N", requires = "approx", default_value_t = ApproxOptions::default().rerank)]
    rerank: usize,
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Factor every candidate (row j of every --modality) once and write the index to --out.
    #[command(
        after_help = "The index holds the vectors (float32) and their factors; it appears at --out only when\n\
complete. Build disjoint --rows ranges on several machines and search them together\n\
(gram search --index A --index B) or search each and `gram merge` the hits.\n\n\
Example:\n  gram index build --modality video.npy --modality audio.npy --out corpus.idx"
    )]
    Build {
        /// A modality's embeddings [N, D]; repeat for k − 1 modalities (1..=15).
        #[arg(long = "modality", value_name = "FILE", required = true)]
        modalities: Vec<String>,
        /// Index directory (replaced only if it holds a previous index).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Index only rows START..END (0-based, END exclusive); hits keep these row numbers.
        #[arg(long, value_name = "START:END", value_parser = parse_rows)]
        rows: Option<std::ops::Range<usize>>,
        /// Candidates per shard file (default: about 1 GiB of vectors each).
        #[arg(long, value_name = "N")]
        shard_rows: Option<usize>,
        /// Also build what `gram search --approx` needs: per shard, the candidates' span bases
        /// in cells (two-level k-means), their int8 codes, and the candidates sorted by volume.
        #[arg(long)]
        ann: bool,
    },
}

fn parse_rows(s: &str) -> Result<std::ops::Range<usize>, String> {
    let (a, b) = s.split_once(':').ok_or("expected START:END")?;
    let n = |x: &str| x.trim().parse::<usize>().map_err(|e| format!("{x}: {e}"));
    Ok(n(a)?..n(b)?)
}

fn run_index(cmd: IndexCommand) -> Result<(), Error> {
    match cmd {
        IndexCommand::Build {
            modalities,
            out,
            rows,
            shard_rows,
            ann,
        } => {
            let r = crate::index::build(&crate::index::BuildOptions {
                modalities,
                out: out.clone(),
                rows,
                shard_rows,
                ann,
                progress: true,
            })?;
            let m = &r.manifest;
            println!(
                "index {}: {} candidates (rows {}..{}), k = {}, D = {}, {} shard(s), {:.1} MB; read {:.2}s, factor {:.2}s, write {:.2}s, ann {:.2}s",
                out.display(),
                m.rows,
                m.first_row,
                m.first_row + m.rows,
                m.k,
                m.dim,
                m.shards.len(),
                r.bytes as f64 / 1e6,
                r.read.as_secs_f64(),
                r.factor.as_secs_f64(),
                r.write.as_secs_f64(),
                r.ann.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Run a parsed command line, printing results to stdout.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Report(args) => run_report(args)?,
        Command::Search(args) => run_search(args)?,
        Command::Index(cmd) => run_index(cmd)?,
        Command::Merge { hits, top_k, out } => crate::hits::merge(&hits, top_k, &out)?,
        Command::Score {
            inputs,
            out,
            backend,
            verbose,
        } => {
            let r = commands::score(
                &inputs.anchor,
                &inputs.modalities,
                inputs.missing(),
                &out,
                backend.into(),
            )?;
            if verbose {
                eprintln!(
                    "scored {}x{} pairs: read {:.3}s, compute {:.3}s, write {:.3}s; {} pairs recomputed in f64, {} exactly",
                    r.shape.0,
                    r.shape.1,
                    r.read.as_secs_f64(),
                    r.compute.as_secs_f64(),
                    r.write.as_secs_f64(),
                    r.stats.f64_recomputes,
                    r.stats.exact_recomputes
                );
            }
        }
        Command::Eval { inputs, ties, json } => {
            let r = commands::eval(
                &inputs.anchor,
                &inputs.modalities,
                inputs.missing(),
                ties.into(),
            )?;
            if json {
                println!("{}", r.to_json());
            } else {
                print!("{}", r.table());
            }
        }
        Command::Loss {
            inputs,
            temperature,
            label_smoothing,
            json,
        } => {
            let l = commands::loss(
                &inputs.anchor,
                &inputs.modalities,
                inputs.missing(),
                temperature,
                label_smoothing,
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"loss": l.loss, "anchor_to_data": l.anchor_to_data, "data_to_anchor": l.data_to_anchor})
                );
            } else {
                println!(
                    "loss {:.6}  (anchor->data {:.6}, data->anchor {:.6})",
                    l.loss, l.anchor_to_data, l.data_to_anchor
                );
            }
        }
    }
    Ok(())
}

fn run_report(args: ReportArgs) -> Result<(), Error> {
    let ReportArgs {
        anchor,
        modalities,
        snapshots,
        anchor_modality,
        names,
        sample,
        out,
        json,
        missing,
    } = args;
    let opts = crate::report::ReportOptions {
        out,
        sampling: crate::report::Sampling {
            rows: sample as usize,
            ..Default::default()
        },
    };
    let summary = match (snapshots, anchor) {
        (Some(dir), _) => crate::report::report_snapshots(&dir, anchor_modality.as_deref(), &opts)?,
        // Inputs::load refuses a missing --modality, as for every subcommand.
        (None, Some(anchor)) => {
            let missing = missing.map(Into::into);
            crate::report::report_files(&anchor, &modalities, names.as_deref(), missing, &opts)?
        }
        (None, None) => {
            return Err(Error::Usage(
                "need --anchor and --modality, or --snapshots".into(),
            ));
        }
    };
    if json {
        println!("{summary}");
    } else {
        print!("{}", crate::report::summary_text(&summary));
        println!("report: {}", opts.out.join("report.html").display());
    }
    Ok(())
}

fn run_search(args: SearchArgs) -> Result<(), Error> {
    let SearchArgs {
        anchor,
        modalities,
        index,
        missing,
        top_k,
        out,
        backend,
        verbose,
        approx,
        probe,
        low_w,
        rerank,
    } = args;
    if approx {
        let opts = ApproxOptions {
            probe,
            low_w,
            rerank,
        };
        if matches!(backend, Backend::Gpu) {
            return Err(Error::argument(
                crate::error::Arg::Backend,
                "gpu",
                "--approx runs on the CPU backend (it re-scores a few gathered rows per query)",
            ));
        }
        let r = commands::search_approx(&anchor, &index, top_k, opts, &out)?;
        eprintln!(
            "approximate search: {} queries, {} certified exact ({:.1}%); {:.0} candidates estimated and {:.0} re-scored a query; compute {:.3}s",
            r.queries,
            r.certified,
            100.0 * r.certified as f64 / r.queries.max(1) as f64,
            r.report.estimated as f64 / r.queries.max(1) as f64,
            r.report.rescored as f64 / r.queries.max(1) as f64,
            r.report.compute.as_secs_f64()
        );
    } else if index.is_empty() {
        let missing = missing.map(Into::into);
        commands::search(&anchor, &modalities, missing, top_k, &out, backend.into())?
    } else {
        let (r, open) = commands::search_index(&anchor, &index, top_k, &out, backend.into())?;
        if verbose {
            eprintln!(
                "searched {} pairs: open+verify {:.3}s, compute {:.3}s; {} pairs recomputed in f64, {} exactly",
                r.stats.pairs,
                open.as_secs_f64(),
                r.compute.as_secs_f64(),
                r.stats.f64_recomputes,
                r.stats.exact_recomputes
            );
        }
    }
    Ok(())
}

/// What parsing the arguments decided.
pub enum Parsed {
    Run(Cli),
    /// `--help` or `--version`: print this to stdout, exit 0.
    Info(String),
    /// A usage error, folded into one `error: …` line.
    Error(String),
}

/// Parse `args` (program name first). Never panics and never exits the process.
pub fn parse<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => Parsed::Run(cli),
        Err(e) if !e.use_stderr() => Parsed::Info(e.render().to_string()),
        // `gram` alone: clap would print the whole help as the "error" (found by fuzzing).
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            Parsed::Error(
                "error: no command given: use score, eval or loss (see gram --help)".into(),
            )
        }
        Err(e) => {
            // One line, like every other failure: clap's message (before its usage block)
            // already starts with "error:"; fold its continuation lines into it.
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let line = message.join(" ");
            let line = if line.starts_with("error:") {
                line
            } else {
                format!("error: {line}")
            };
            Parsed::Error(format!("{line} (see gram --help)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_line(args: &[&str]) -> String {
        match parse(std::iter::once("gram").chain(args.iter().copied())) {
            Parsed::Error(line) => line,
            _ => panic!("{args:?} should be a usage error"),
        }
    }

    #[test]
    fn usage_errors_are_one_error_line() {
        for args in [
            &[][..],
            &["--"],
            &["score"],
            &["score", "--anchor", "a.npy", "--out", "v.npy"],
            &["bogus"],
            &["loss", "--temperature", "x"],
        ] {
            let line = error_line(args);
            assert!(
                line.starts_with("error:") && !line.contains('\n'),
                "{args:?}: {line}"
            );
        }
        assert!(error_line(&[]).contains("no command given"));
        assert!(matches!(parse(["gram", "--version"]), Parsed::Info(_)));
        assert!(matches!(
            parse(["gram", "eval", "--anchor", "a", "--modality", "b", "--json"]),
            Parsed::Run(_)
        ));
    }
}
