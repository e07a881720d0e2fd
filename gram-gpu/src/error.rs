//! Errors of the GPU backend: typed, never panics.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum GpuError {
    /// No adapter (GPU or software rasteriser) is available to wgpu.
    NoAdapter(String),
    /// The adapter refused to create a device.
    RequestDevice(String),
    /// The device was lost or a command failed (message from wgpu).
    Device(String),
    /// A problem with the inputs (shape, NaN, range), from gram-nostd.
    Input(gram_nostd::GramError),
    /// Something exceeds what this device can do even after tiling (e.g. one candidate's
    /// basis above the largest storage binding).
    TooLarge(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoAdapter(m) => write!(f, "no GPU adapter available: {m}"),
            GpuError::RequestDevice(m) => write!(f, "GPU device request failed: {m}"),
            GpuError::Device(m) => write!(f, "GPU device error: {m}"),
            GpuError::Input(e) => write!(f, "{e}"),
            GpuError::TooLarge(m) => write!(f, "too large for this GPU: {m}"),
        }
    }
}

impl std::error::Error for GpuError {}

impl From<gram_nostd::GramError> for GpuError {
    fn from(e: gram_nostd::GramError) -> GpuError {
        GpuError::Input(e)
    }
}
