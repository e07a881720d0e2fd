//! The fused volume kernel's specialisations: which main loop, tile sizes and constants a
//! device gets for a given k, and the WGSL source assembled for it.
//!
//! The shader text lives in `shaders/volume_*.wgsl`; the host prepends a few `const` lines
//! (k − 1, the register tile, the workgroup shape), so every loop over the register tile has
//! constant bounds the driver's compiler unrolls, and register arrays are only ever indexed
//! by constants after unrolling (indexing them by a variable would spill them to memory).

/// How the fused kernel is compiled for one k on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Specialisation {
    /// Vectors per candidate (k − 1), 1..=15.
    pub m: u32,
    /// Anchors per invocation.
    pub tm: u32,
    /// Candidates per invocation.
    pub tc: u32,
    /// Invocations per workgroup along candidates and along anchors.
    pub wx: u32,
    pub wy: u32,
    /// Operand tiles through workgroup memory (GPUs) or straight vec4 loads (CPU adapters).
    pub staged: bool,
    /// The reference GEMM: write the cross dots instead of volumes.
    pub raw: bool,
}

/// Floats of D per K-step of the kernel (`KS4` vec4s): D is zero-padded to a multiple of it.
pub const K_STEP: usize = 16;

impl Specialisation {
    /// The variant for an adapter: CPU-type adapters (lavapipe, SwiftShader) read operands
    /// directly, 8 × 8 invocations each holding 8 anchors × ⌊8/m⌋ candidates; other adapters
    /// stage tiles in workgroup memory, 16 × 16 (16 × 8 beyond m = 8, to stay within 16 KiB)
    /// invocations each holding 4 anchors × ⌊8/m⌋ candidates. `workgroup_bytes` is the
    /// adapter's `max_compute_workgroup_storage_size`; a staged tile that would not fit falls
    /// back to direct loads.
    pub fn for_adapter(cpu_type: bool, workgroup_bytes: u32, m: usize, raw: bool) -> Self {
        let m = m as u32;
        let tc = (8 / m).max(1);
        let direct = Specialisation {
            m,
            tm: 8,
            tc,
            wx: 8,
            wy: 8,
            staged: false,
            raw,
        };
        if cpu_type {
            return direct;
        }
        let wx = if tc * m <= 8 { 16 } else { 8 };
        let staged = Specialisation {
            m,
            tm: 4,
            tc,
            wx,
            wy: 16,
            staged: true,
            raw,
        };
        if staged.workgroup_bytes() <= workgroup_bytes as usize {
            staged
        } else {
            direct
        }
    }

    /// Anchors covered by one workgroup (the row padding of a block).
    pub fn tile_rows(&self) -> usize {
        (self.tm * self.wy) as usize
    }

    /// Candidates covered by one workgroup (the column padding of a block).
    pub fn tile_cols(&self) -> usize {
        (self.tc * self.wx) as usize
    }

    /// Workgroup memory of the staged variant: both tiles, rows padded by one vec4.
    pub fn workgroup_bytes(&self) -> usize {
        if !self.staged {
            return 0;
        }
        let rows = self.tile_rows() + self.tile_cols() * self.m as usize;
        rows * (K_STEP / 4 + 1) * 16
    }

    /// The WGSL source: constants, the shared bindings and epilogue, the main loop.
    pub fn source(&self) -> String {
        let header = format!(
            "const M: u32 = {}u;\nconst TM: u32 = {}u;\nconst TC: u32 = {}u;\n\
             const WX: u32 = {}u;\nconst WY: u32 = {}u;\nconst RAW: bool = {};\n",
            self.m, self.tm, self.tc, self.wx, self.wy, self.raw
        );
        let main = if self.staged {
            include_str!("shaders/volume_staged.wgsl")
        } else {
            include_str!("shaders/volume_direct.wgsl")
        };
        format!(
            "{header}\n{}\n{main}",
            include_str!("shaders/volume_common.wgsl")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse and validate the assembled source with naga, the front end wgpu itself uses.
    fn validate(s: &Specialisation) {
        let module = naga::front::wgsl::parse_str(&s.source())
            .unwrap_or_else(|e| panic!("{s:?}: {}", e.emit_to_string(&s.source())));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{s:?}: {e:?}"));
    }

    #[test]
    fn every_k_gets_a_valid_variant() {
        for m in 1..=15 {
            for cpu in [true, false] {
                let s = Specialisation::for_adapter(cpu, 16384, m, false);
                assert_eq!(s.staged, !cpu);
                assert!(
                    s.workgroup_bytes() <= 16384,
                    "m {m}: {}",
                    s.workgroup_bytes()
                );
                assert!(s.tc * s.m <= 15 && s.tc >= 1);
                for raw in [false, true] {
                    validate(&Specialisation { raw, ..s });
                }
            }
        }
        // Too little workgroup memory for the staged tile: direct loads instead.
        assert!(!Specialisation::for_adapter(false, 1024, 2, false).staged);
    }
}
