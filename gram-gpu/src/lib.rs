//! gram-gpu: wgpu/WGSL batched scoring (see issue 4).
