//! What a batch source hands the training step: host-side inputs per modality. Its own room so
//! that the sources (`source.rs`) and the raw-data reader (`raw.rs`) both depend on it and not
//! on each other.

use crate::model::encoders::HostInput;

/// One batch from a source: the inputs per modality, the sample indices they hold (bad raw
/// samples may have been skipped), and which samples lack each modality.
pub struct HostBatch {
    pub inputs: Vec<HostInput>,
    pub kept: Vec<usize>,
    /// `missing[t][i]`: sample `kept[i]` has no vector of modality t; its input there is a
    /// finite placeholder (zeros, an empty text) whose embedding the loss never uses.
    pub missing: Vec<Vec<bool>>,
}

impl HostBatch {
    /// Whether any sample of the batch lacks a modality.
    pub fn incomplete(&self) -> bool {
        self.missing.iter().flatten().any(|&m| m)
    }
}
