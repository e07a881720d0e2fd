//! The fused volume kernel's specialisations: which main loop, tile sizes and constants a
//! device gets for a given k, and the WGSL source assembled for it.
//!
//! The shared part (bindings, the per-pair epilogue) and the GPU main loop live in
//! `shaders/volume_*.wgsl`; the host prepends a few `const` lines (k − 1, the register tile, the
//! workgroup shape), so every loop over the register tile has constant bounds a GPU driver's
//! compiler unrolls.
//!
//! The main loop for CPU-type adapters is written out here, fully unrolled, because of what
//! was measured on Mesa 22.3's lavapipe (this project's 2-core VM, wgpu-py and wgpu 30,
//! 2026-11-30): every load from storage or workgroup memory costs ≈28 ns per invocation
//! (lavapipe scalarises it lane by lane), 128× an arithmetic vec4 operation, whether the
//! address is uniform or not. Speed there is dots per load, TM·TC·m/(TM + TC·m): a 2048 ×
//! 4096 × 512 GEMM ran at 2.2 GFLOP/s with 8 × 8 per invocation, 4.3 with 16 × 16, 7.4 with
//! 32 × 32 (the accumulators then live on the stack, whose accesses are ordinary CPU loads).
//! 32 × 32 takes lavapipe's LLVM minutes to compile (its coroutine pass), 16 × 16 about 2 s:
//! 16 × 16 it is. A register tile that large only stays out of lavapipe's slow indexed scratch memory as
//! named scalars with constant indices, which WGSL cannot express with loops: hence generated
//! text.
//!
//! Where the adapter has subgroups of one fixed size S (lavapipe: 8, its SIMD width), the lanes
//! of a subgroup share their anchors: each lane loads TM/S of the TM anchor vec4s and the
//! others arrive by `subgroupBroadcast` (a register shuffle there, not a load). With TM = 32 and
//! TC·m = 8 a lane loads 4 + 8 vec4s per step for 256 dots (21 dots per load, against 8 for the
//! 16 × 16 tile without subgroups) with the same 256 accumulators, so the compile time stays
//! (lavapipe, 2048 × 4096 × 512: 3.9 → 8.8 GFLOP/s). Tried there and not kept: blocking the
//! sums per 8 or 16 floats (a tighter error bound; no faster, 3–4× the compile time); 64 anchors
//! × 8 (a 2048² volume matrix in 0.8 s instead of 1.1, but 21 s to compile per k, against ~1 s;
//! 40 or 48 anchors: no faster, 9–13 s).

/// A main loop a caller can ask for whatever the adapter (tests run each one on lavapipe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelVariant {
    /// Operand tiles staged through workgroup memory (what GPUs get).
    Staged,
    /// Straight vec4 loads (CPU-type adapters without subgroups).
    Direct,
    /// Straight vec4 loads, anchors shared across a subgroup (CPU-type adapters with fixed-size
    /// subgroups); [`KernelVariant::Direct`] where the adapter has none.
    DirectSubgroup,
}

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
    /// Direct loads with anchors shared across a subgroup of this many lanes (0: none).
    pub subgroup: u32,
    /// The reference GEMM: write the cross dots instead of volumes.
    pub raw: bool,
}

/// Floats of D per K-step of the kernel (`KS4` vec4s): D is zero-padded to a multiple of it.
pub const K_STEP: usize = 16;

impl Specialisation {
    /// The variant for an adapter: CPU-type adapters (lavapipe, SwiftShader) read operands
    /// directly, 8 × 8 invocations each holding 16 anchors × ⌊16/m⌋ candidates; other adapters
    /// stage tiles in workgroup memory, 16 × 16 (16 × 8 beyond m = 8, to stay within 16 KiB)
    /// invocations each holding 4 anchors × ⌊8/m⌋ candidates. `workgroup_bytes` is the
    /// adapter's `max_compute_workgroup_storage_size`; a staged tile that would not fit falls
    /// back to direct loads. `subgroup`: the adapter's fixed subgroup size where it has
    /// subgroups of one size (a power of two up to 32), else 0; CPU-type adapters then share
    /// anchors across a subgroup (S × 64/S invocations of 32 anchors × ⌊8/m⌋ candidates).
    pub fn for_adapter(
        cpu_type: bool,
        workgroup_bytes: u32,
        subgroup: u32,
        m: usize,
        raw: bool,
    ) -> Self {
        let m = m as u32;
        if cpu_type && subgroup.is_power_of_two() && subgroup <= 32 {
            return Specialisation {
                m,
                tm: 32,
                tc: (8 / m).max(1),
                wx: subgroup,
                wy: 64 / subgroup,
                staged: false,
                subgroup,
                raw,
            };
        }
        let direct = Specialisation {
            m,
            tm: 16,
            tc: (16 / m).max(1),
            wx: 8,
            wy: 8,
            staged: false,
            subgroup: 0,
            raw,
        };
        if cpu_type {
            return direct;
        }
        let tc = (8 / m).max(1);
        let wx = if tc * m <= 8 { 16 } else { 8 };
        let staged = Specialisation {
            m,
            tm: 4,
            tc,
            wx,
            wy: 16,
            staged: true,
            subgroup: 0,
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
            include_str!("shaders/volume_staged.wgsl").to_string()
        } else {
            self.direct_main()
        };
        format!(
            "{header}\n{}\n{}\n{main}",
            include_str!("shaders/pair.wgsl"),
            include_str!("shaders/volume_common.wgsl")
        )
    }

    /// The direct main loop, unrolled over the register tile (see the module doc). Without
    /// subgroups invocation (x, y) of workgroup (X, Y) holds anchors ia + WY·r, ia = Y·TM·WY + y;
    /// with them, a subgroup (a workgroup row: WX = S lanes) holds anchors ia + r, ia =
    /// (Y·WY + y)·TM, each lane loading rows lane + S·u. Either way the candidates are jb + WX·c,
    /// jb = X·TC·WX + x (consecutive invocations write consecutive columns). The subgroup form
    /// assumes subgroups are whole workgroup rows of consecutive invocations, as Vulkan
    /// implementations form them (tests/gpu.rs checks it against the CPU on lavapipe).
    fn direct_main(&self) -> String {
        use std::fmt::Write;
        let (tm, tc, m, wx, wy, sg) = (self.tm, self.tc, self.m, self.wx, self.wy, self.subgroup);
        let pairs = |f: &mut dyn FnMut(u32, u32)| {
            for r in 0..tm {
                for q in 0..tc * m {
                    f(r, q)
                }
            }
        };
        let mut s = String::from(
            "// Generated by kernel.rs (`Specialisation::direct_main`): operands straight from\n\
             // storage, the register tile unrolled into named scalars.\n",
        );
        let row_step = if sg > 0 {
            // naga takes the subgroup builtins only with a one-dimensional workgroup.
            s.push_str(
                "@compute @workgroup_size(WX * WY)\n\
                 fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32, \
                 @builtin(subgroup_invocation_id) lane: u32) {\n\
                 \x20   let lid = vec2<u32>(li % WX, li / WX);\n",
            );
            let _ = writeln!(s, "    let ia = (wg.y * WY + lid.y) * {tm}u;");
            1
        } else {
            s.push_str(
                "@compute @workgroup_size(WX, WY)\n\
                 fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {\n",
            );
            let _ = writeln!(s, "    let ia = wg.y * {}u + lid.y;", tm * wy);
            wy
        };
        let _ = writeln!(s, "    let jb = wg.x * {}u + lid.x;", tc * wx);
        pairs(&mut |r, q| {
            let _ = writeln!(s, "    var acc_{r}_{q} = 0.0;");
        });
        // One vec4 of D per iteration, straight into the accumulators: no blocked partial
        // sums (a second set of TM·TC·m live values made lavapipe's LLVM spend minutes in its
        // coroutine pass); prepare.rs's error model is this loop's.
        s.push_str("    for (var x = 0u; x < p.d4; x++) {\n");
        if let Some(per_lane) = tm.checked_div(sg) {
            for u in 0..per_lane {
                let _ = writeln!(
                    s,
                    "        let own_{u} = anchors[(ia + lane + {}u) * p.d4 + x];",
                    sg * u
                );
            }
            // Anchor r was loaded by lane r mod S as its (r div S)-th.
            for u in 0..per_lane {
                for l in 0..sg {
                    let _ = writeln!(
                        s,
                        "        let a_{} = subgroupBroadcast(own_{u}, {l}u);",
                        u * sg + l
                    );
                }
            }
        } else {
            for r in 0..tm {
                let _ = writeln!(
                    s,
                    "        let a_{r} = anchors[(ia + {}u) * p.d4 + x];",
                    wy * r
                );
            }
        }
        for q in 0..tc * m {
            let (c, t) = (q / m, q % m);
            let _ = writeln!(
                s,
                "        let b_{q} = basis[((jb + {}u) * M + {t}u) * p.d4 + x];",
                wx * c
            );
            for r in 0..tm {
                let _ = writeln!(s, "        acc_{r}_{q} += dot(a_{r}, b_{q});");
            }
        }
        s.push_str("    }\n");
        // The epilogue as a loop over an array (one copy of its code, not TM·TC: unrolled,
        // lavapipe's compile time explodes); it runs once per pair, the loads above D/4 times.
        let _ = writeln!(s, "    var res: array<f32, {}>;", tm * tc * m);
        pairs(&mut |r, q| {
            let _ = writeln!(s, "    res[{}u] = acc_{r}_{q};", r * tc * m + q);
        });
        // Each anchor's and candidate's constants loaded once (a load costs as much as the
        // pair's arithmetic on lavapipe), not once per pair.
        let _ = write!(
            s,
            "    var cinfo: array<vec2<f32>, TC>;\n\
             \x20   for (var c = 0u; c < TC; c++) {{\n\
             \x20       cinfo[c] = cand_info[jb + WX * c];\n\
             \x20   }}\n\
             \x20   for (var r = 0u; r < TM; r++) {{\n\
             \x20       let i = ia + {row_step}u * r;\n\
             \x20       let ai = anchor_info[i];\n\
             \x20       for (var c = 0u; c < TC; c++) {{\n\
             \x20           var dots: array<f32, M>;\n\
             \x20           for (var t = 0u; t < M; t++) {{\n\
             \x20               dots[t] = res[(r * TC + c) * M + t];\n\
             \x20           }}\n\
             \x20           store_pair_with(i, jb + WX * c, ai, cinfo[c], dots);\n\
             \x20       }}\n\
             \x20   }}\n}}\n",
        );
        s
    }
}

/// The refinement pass's WGSL source for k − 1 = `m` (`shaders/refine.wgsl`; needs f64).
pub fn refine_source(m: usize) -> String {
    format!(
        "const M: u32 = {m}u;\n{}\n{}",
        include_str!("shaders/pair.wgsl"),
        include_str!("shaders/refine.wgsl")
    )
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
            naga::valid::Capabilities::SUBGROUP,
        )
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{s:?}: {e:?}"));
    }

    #[test]
    fn every_k_gets_a_valid_variant() {
        for m in 1..=15 {
            for cpu in [true, false] {
                let s = Specialisation::for_adapter(cpu, 16384, 0, m, false);
                // The unrolled direct sources are large and naga is slow in debug builds:
                // a few register-tile shapes here, every k on a real adapter (tests/gpu.rs).
                if cpu && ![1, 2, 5, 15].contains(&m) {
                    continue;
                }
                assert_eq!(s.staged, !cpu);
                assert!(
                    s.workgroup_bytes() <= 16384,
                    "m {m}: {}",
                    s.workgroup_bytes()
                );
                assert!(s.tc >= 1 && s.tc * s.m <= if cpu { 16 } else { 15 });
                for raw in [false, true] {
                    validate(&Specialisation { raw, ..s });
                }
            }
        }
        for m in [1, 2, 15] {
            let module = naga::front::wgsl::parse_str(&refine_source(m)).unwrap_or_else(|e| {
                panic!("refine, m {m}: {}", e.emit_to_string(&refine_source(m)))
            });
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::FLOAT64,
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("refine, m {m}: {e:?}"));
        }
        for m in [1, 2, 5, 15] {
            let s = Specialisation::for_adapter(true, 16384, 8, m, false);
            assert_eq!((s.subgroup, s.wx, s.tm % s.subgroup), (8, 8, 0));
            validate(&s);
        }
        // Too little workgroup memory for the staged tile: direct loads instead.
        assert!(!Specialisation::for_adapter(false, 1024, 0, 2, false).staged);
    }
}
