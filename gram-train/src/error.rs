//! The crate's one error type. Every variant's message is what the CLI prints after `error: `
//! (it names the flag, file, row or device at fault); the variant tells a program what kind of
//! failure it was, so a caller can match on it instead of parsing text.

use std::path::{Path, PathBuf};

/// What went wrong, by kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value, flag or combination the run cannot use; the message names the
    /// setting (`--batch-size 3: …`, `loss = "dam" needs …`).
    #[error("{0}")]
    Config(String),
    /// A dataset file that is missing, malformed or holds values that cannot train: `file`
    /// names it, `row` the 1-based line or row when one is at fault.
    #[error("{}{}: {message}", file.display(), row.map(|r| format!(" line {r}")).unwrap_or_default())]
    Data {
        file: PathBuf,
        row: Option<usize>,
        message: String,
    },
    /// A checkpoint or pretrained-model folder that cannot be read or does not fit the model.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// Training produced a non-finite loss or gradient at `step` and stopped before updating;
    /// the message says which checkpoint is kept.
    #[error("step {step}: {message}")]
    Diverged { step: u64, message: String },
    /// A file that could not be read or written (`path`: which).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A sample whose contents do not decode (a WAV, an image, a text the tokenizer refuses);
    /// the raw-dataset reader reports it as [`Error::Data`] with the manifest's line.
    #[error("{0}")]
    Decode(String),
    /// A device that cannot be opened or used (no CUDA build, no such GPU, NCCL failures).
    #[error("{0}")]
    Device(String),
    /// A feature file gram-host's reader refused (its message names the file).
    #[error(transparent)]
    Input(#[from] gram_host::input::InputError),
    /// gram-host refused or failed (scoring, metrics, reports, writing outputs).
    #[error(transparent)]
    Host(#[from] gram_host::error::Error),
    /// The volume computation refused its input (non-finite or degenerate embeddings).
    #[error("{0}")]
    Volume(gram_nostd::GramError),
    /// A tensor operation failed inside Candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<gram_nostd::GramError> for Error {
    fn from(e: gram_nostd::GramError) -> Error {
        Error::Volume(e)
    }
}

impl Error {
    pub fn config(message: impl Into<String>) -> Error {
        Error::Config(message.into())
    }

    pub fn data(file: &Path, message: impl std::fmt::Display) -> Error {
        Error::Data {
            file: file.to_path_buf(),
            row: None,
            message: message.to_string(),
        }
    }

    /// A data error at 1-based line or row `row` of `file`.
    pub fn data_row(file: &Path, row: usize, message: impl std::fmt::Display) -> Error {
        Error::Data {
            file: file.to_path_buf(),
            row: Some(row),
            message: message.to_string(),
        }
    }

    pub fn checkpoint(path: &Path, message: impl std::fmt::Display) -> Error {
        Error::Checkpoint {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn decode(message: impl Into<String>) -> Error {
        Error::Decode(message.into())
    }

    pub fn device(message: impl Into<String>) -> Error {
        Error::Device(message.into())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
