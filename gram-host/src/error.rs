//! gram-host's error type. Its `Display` is the CLI's wording (`gram` prints `error: ` and it,
//! exit code 2); the variants let other front ends word the same failure in their own terms —
//! the Python package names keyword arguments (`k=0`) where the CLI names flags (`--top-k 0`),
//! and raises `ValueError`, `OSError` or `RuntimeError` by variant.

use crate::input::InputError;
use std::fmt;

/// An argument of an operation, named independently of any front end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    TopK,
    Temperature,
    LabelSmoothing,
    Modality,
    AnchorModality,
    Names,
    Index,
    ShardRows,
    Rows,
    Probe,
    Rerank,
    Backend,
}

impl Arg {
    /// The `gram` flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Arg::TopK => "--top-k",
            Arg::Temperature => "--temperature",
            Arg::LabelSmoothing => "--label-smoothing",
            Arg::Modality => "--modality",
            Arg::AnchorModality => "--anchor-modality",
            Arg::Names => "--names",
            Arg::Index => "--index",
            Arg::ShardRows => "--shard-rows",
            Arg::Rows => "--rows",
            Arg::Probe => "--probe",
            Arg::Rerank => "--rerank",
            Arg::Backend => "--backend",
        }
    }
}

/// What went wrong, by kind.
#[derive(Debug)]
pub enum Error {
    /// An argument the operation cannot use. `value` is what was given as the CLI spells it;
    /// `None` when nothing was given, `Some("")` when the argument as a whole is at fault.
    Argument {
        arg: Arg,
        value: Option<String>,
        message: String,
    },
    /// An input matrix, file or directory whose shape, values or format cannot be used
    /// (`name`: the file, tensor or directory as the user named it).
    Data { name: String, message: String },
    /// A file or directory that could not be opened, read, created or written (`path`: which;
    /// `message` carries the system's reason).
    Io { path: String, message: String },
    /// The GPU backend is not built in, found no adapter, or failed.
    Gpu(String),
    /// A combination of arguments no operation accepts (the CLI's usage errors).
    Usage(String),
}

impl Error {
    pub fn argument(arg: Arg, value: impl fmt::Display, message: impl Into<String>) -> Error {
        Error::Argument {
            arg,
            value: Some(value.to_string()),
            message: message.into(),
        }
    }

    /// `arg` was not given but is needed.
    pub fn missing(arg: Arg, message: impl Into<String>) -> Error {
        Error::Argument {
            arg,
            value: None,
            message: message.into(),
        }
    }

    pub fn data(name: impl fmt::Display, message: impl Into<String>) -> Error {
        Error::Data {
            name: name.to_string(),
            message: message.into(),
        }
    }

    pub fn io(path: impl fmt::Display, message: impl Into<String>) -> Error {
        Error::Io {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Argument {
                arg,
                value: None,
                message,
            } if message.is_empty() => write!(f, "no {} given", arg.flag()),
            Error::Argument {
                arg,
                value: None,
                message,
            } => write!(f, "no {} given: {message}", arg.flag()),
            Error::Argument {
                arg,
                value: Some(v),
                message,
            } if v.is_empty() => write!(f, "{}: {message}", arg.flag()),
            Error::Argument {
                arg,
                value: Some(v),
                message,
            } => write!(f, "{} {v}: {message}", arg.flag()),
            Error::Data { name, message } => write!(f, "{name}: {message}"),
            Error::Io { path, message } => write!(f, "{path}: {message}"),
            Error::Gpu(message) => write!(f, "--backend gpu: {message}"),
            Error::Usage(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<InputError> for Error {
    fn from(e: InputError) -> Error {
        match e.io {
            Some(_) => Error::io(&e.file, e.problem),
            None => Error::data(&e.file, e.problem),
        }
    }
}
