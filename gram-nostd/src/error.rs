//! The one error type of the crate.

use core::fmt;

/// Why a computation was refused. Every public function returns this instead of panicking or
/// producing NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GramError {
    /// No vectors, a vector of length 0, an empty score row or an empty batch.
    EmptyInput,
    /// More vectors than [`crate::MAX_K`].
    TooManyVectors { k: usize },
    /// Two inputs that must have the same length do not.
    DimensionMismatch { expected: usize, found: usize },
    /// An input element (or parameter) is NaN or infinite.
    NonFinite,
    /// The exact result does not fit the output type (e.g. a volume above `f32::MAX`).
    /// [`crate::log_volume`] never returns it.
    OutOfRange,
    /// A Gram matrix with a negative diagonal entry (not positive semidefinite).
    NotPositiveSemidefinite,
    /// A parameter outside its domain (temperature ≤ 0, label smoothing outside [0, 1], …).
    InvalidParameter,
}

impl fmt::Display for GramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GramError::EmptyInput => write!(f, "empty input"),
            GramError::TooManyVectors { k } => {
                write!(
                    f,
                    "{k} vectors given; at most {} are supported",
                    crate::MAX_K
                )
            }
            GramError::DimensionMismatch { expected, found } => {
                write!(f, "dimension mismatch: expected {expected}, found {found}")
            }
            GramError::NonFinite => write!(f, "input contains NaN or infinity"),
            GramError::OutOfRange => write!(f, "result does not fit the output type"),
            GramError::NotPositiveSemidefinite => {
                write!(f, "Gram matrix has a negative diagonal entry")
            }
            GramError::InvalidParameter => write!(f, "parameter outside its domain"),
        }
    }
}

impl core::error::Error for GramError {}
