//! GPU parity with the exact reference volumes and with gram-nostd, shapes that stress the
//! tiling, and top-k against the CPU's. Runs on whatever adapter wgpu finds (Mesa's software
//! Vulkan in CI). Without one the tests print that they were skipped — unless
//! GRAM_REQUIRE_GPU=1, then they fail.

use gram_gpu::{GpuContext, GpuScorer, KernelVariant};

const VARIANTS: [KernelVariant; 3] = [
    KernelVariant::Direct,
    KernelVariant::DirectSubgroup,
    KernelVariant::Staged,
];
use gram_nostd::{candidate_at, score_row};
use std::path::PathBuf;
use std::sync::OnceLock;

fn context() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    match CTX.get_or_init(|| GpuContext::new().map_err(|e| e.to_string())) {
        Ok(c) => Some(c),
        Err(e) if std::env::var("GRAM_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("GRAM_REQUIRE_GPU=1 but {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: {e} (set GRAM_REQUIRE_GPU=1 to make this a failure)");
            None
        }
    }
}

/// The repository's reference data: `$GRAM_REPO/testdata/reference` where the test binary runs
/// away from its build tree (scripts/gpu-bench.sh), else this checkout's.
fn reference_dir() -> PathBuf {
    std::env::var_os("GRAM_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .join("testdata/reference")
}

fn load<T: npyz::Deserialize>(name: &str) -> (usize, usize, Vec<T>) {
    let p = reference_dir().join(name);
    let bytes = std::fs::read(&p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let s = npy.shape().to_vec();
    (s[0] as usize, s[1] as usize, npy.into_vec().unwrap())
}

fn pseudo(len: usize, seed: u64) -> Vec<f32> {
    gram_nostd::uniform::Uniform::new(seed)
        .take(len)
        .map(|x| x as f32)
        .collect()
}

/// The CPU volume matrix (gram-nostd's scoring kernel).
fn cpu_matrix(anchor: &[f32], mods: &[&[f32]], n2: usize, d: usize) -> Vec<f32> {
    let cands: Vec<_> = (0..n2).map(|j| candidate_at(mods, d, j).unwrap()).collect();
    let mut out = vec![0.0f32; anchor.len() / d * n2];
    for (a, row) in anchor.chunks_exact(d).zip(out.chunks_exact_mut(n2)) {
        score_row(a, mods, &cands, row).unwrap();
    }
    out
}

#[test]
fn reference_cases_meet_the_gpu_contract() {
    let Some(ctx) = context() else { return };
    eprintln!("adapter: {}", ctx.describe());
    let index: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(reference_dir().join("index.json")).unwrap())
            .unwrap();
    for (name, m) in &index {
        let (n1, d, a) = load::<f32>(&format!("{name}_anchor.npy"));
        let mods: Vec<Vec<f32>> = (0..m.as_u64().unwrap())
            .map(|t| load::<f32>(&format!("{name}_mod{t}.npy")).2)
            .collect();
        let (_, n2, exact) = load::<f64>(&format!("{name}_exact.npy"));
        let refs: Vec<&[f32]> = mods.iter().map(|v| v.as_slice()).collect();
        let v = GpuScorer::new(ctx, &refs, n2, d)
            .unwrap()
            .volume_matrix(&a)
            .unwrap();
        assert_eq!(v.len(), n1 * n2);
        // The GPU contract: 1e-6 relative everywhere (pairs the kernel cannot resolve to
        // that are recomputed on the host), exact zeros.
        let tol = 1e-6;
        let (mut worst_rel, mut worst_abs) = (0.0f64, 0.0f64);
        for (g, e) in v.iter().zip(&exact) {
            let g = *g as f64;
            if *e == 0.0 {
                worst_abs = worst_abs.max(g.abs());
            } else {
                worst_rel = worst_rel.max((g - e).abs() / e);
            }
        }
        eprintln!("{name}: worst rel {worst_rel:.1e}, worst abs at exact zeros {worst_abs:.1e}");
        assert!(worst_rel <= tol, "{name}: rel {worst_rel:e} > {tol:e}");
        assert_eq!(worst_abs, 0.0, "{name}: nonzero at an exact zero");
    }
}

#[test]
fn awkward_shapes_and_forced_tiling_match_the_cpu() {
    let Some(ctx) = context() else { return };
    // (n1, n2, d, m, block rows, block cols): N = 1, N not a multiple of 8, D = 1, 3, 4097,
    // and blocks far below the problem so anchors and candidates are both tiled.
    for &(n1, n2, d, m, br, bc) in &[
        (1, 1, 3, 1, usize::MAX, usize::MAX),
        (13, 11, 3, 2, usize::MAX, usize::MAX),
        (5, 7, 1, 1, usize::MAX, usize::MAX),
        (9, 10, 4097, 2, usize::MAX, usize::MAX),
        (37, 29, 17, 3, 8, 16),
        (20, 50, 64, 4, 3, 7),
    ] {
        let a = pseudo(n1 * d, 1 + d as u64);
        let mods: Vec<Vec<f32>> = (0..m).map(|t| pseudo(n2 * d, 100 + t as u64)).collect();
        let refs: Vec<&[f32]> = mods.iter().map(|v| v.as_slice()).collect();
        both_variants_match_the_cpu(ctx, &a, &refs, (n1, n2, d, m), (br, bc));
    }
}

/// The volume matrix from every kernel variant (blocks capped at `block`) against the CPU's.
fn both_variants_match_the_cpu(
    ctx: &GpuContext,
    a: &[f32],
    refs: &[&[f32]],
    shape: (usize, usize, usize, usize),
    block: (usize, usize),
) {
    let (_, n2, d, _) = shape;
    let cpu = cpu_matrix(a, refs, n2, d);
    for variant in VARIANTS {
        let gpu = GpuScorer::new(ctx, refs, n2, d)
            .unwrap()
            .with_max_block(block.0, block.1)
            .with_kernel_variant(variant)
            .volume_matrix(a)
            .unwrap();
        check_against_cpu(&gpu, &cpu, shape);
    }
}

/// The GPU's volumes within its contract (1e-6 relative) of the CPU's, on nondegenerate data.
/// (The CPU's own output is the exact volume rounded to f32: hence 1.1e-6.)
fn check_against_cpu(gpu: &[f32], cpu: &[f32], (n1, n2, d, m): (usize, usize, usize, usize)) {
    // Guard against degenerate test data (which would make every comparison 0 = 0).
    assert!(
        d < m + 1 || cpu.iter().all(|&x| x > 0.0),
        "degenerate data for ({n1},{n2},{d},{m})"
    );
    assert_eq!(gpu.len(), cpu.len());
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        let (g, c) = (*g as f64, *c as f64);
        let ok = if c == 0.0 {
            g == 0.0
        } else {
            (g - c).abs() <= 1.1e-6 * c
        };
        assert!(
            ok,
            "shape ({n1},{n2},{d},k={}) pair {i}: gpu {g} cpu {c}",
            m + 1
        );
    }
}

#[test]
fn every_k_and_both_kernel_variants_match_the_cpu() {
    let Some(ctx) = context() else { return };
    // k = 2 … 16: every register-tile shape (⌊16/m⌋ candidates per invocation direct, ⌊8/m⌋
    // staged, one beyond).
    for m in 1..=15 {
        let (n1, n2, d) = (21, 19, 40);
        let a = pseudo(n1 * d, 3 + m as u64);
        let mods: Vec<Vec<f32>> = (0..m).map(|t| pseudo(n2 * d, 200 + t as u64)).collect();
        let refs: Vec<&[f32]> = mods.iter().map(|v| v.as_slice()).collect();
        both_variants_match_the_cpu(ctx, &a, &refs, (n1, n2, d, m), (usize::MAX, usize::MAX));
    }
}

#[test]
fn reference_gemm_is_the_product_of_its_operands() {
    let Some(ctx) = context() else { return };
    let (n1, n2, d, m) = (37, 45, 100, 2);
    let a = pseudo(n1 * d, 11);
    let mods: Vec<Vec<f32>> = (0..m).map(|t| pseudo(n2 * d, 300 + t as u64)).collect();
    let refs: Vec<&[f32]> = mods.iter().map(|v| v.as_slice()).collect();
    for variant in VARIANTS {
        let scorer = GpuScorer::new(ctx, &refs, n2, d)
            .unwrap()
            .with_max_block(16, 24)
            .with_kernel_variant(variant);
        let c = scorer.reference_gemm(&a, true).unwrap().unwrap();
        let (aa, q, d_pad) = scorer.reference_operands(&a);
        assert_eq!(c.len(), n1 * n2 * m);
        for i in 0..n1 {
            for r in 0..n2 * m {
                let x = &aa[i * d_pad..(i + 1) * d_pad];
                let y = &q[r * d_pad..(r + 1) * d_pad];
                let want = gram_nostd::dot::dot_f64(x, 1.0, y, 1.0);
                let scale = gram_nostd::dot::dot_f64(x, 1.0, x, 1.0).sqrt();
                let got = c[i * n2 * m + r] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * scale,
                    "{i},{r}: {got} vs {want}"
                );
            }
        }
        assert!(scorer.reference_gemm(&a, false).unwrap().is_none());
    }
}

/// Anchors lying nearly in their candidate's span (normalised residual `eps`): the pairs the
/// kernel's bound sends to the host.
fn near_collinear(n: usize, d: usize, eps: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m0 = pseudo(n * d, 21);
    let m1 = pseudo(n * d, 22);
    let noise = pseudo(n * d, 23);
    let a = (0..n * d)
        .map(|x| 0.6 * m0[x] - 0.8 * m1[x] + eps * noise[x])
        .collect();
    (a, m0, m1)
}

#[test]
fn flagged_pairs_are_recomputed_also_when_the_list_overflows() {
    let Some(ctx) = context() else { return };
    let (n, d) = (24, 32);
    let (a, m0, m1) = near_collinear(n, d, 1e-4);
    let refs = [m0.as_slice(), m1.as_slice()];
    let cpu = cpu_matrix(&a, &refs, n, d);
    let full = GpuScorer::new(ctx, &refs, n, d).unwrap();
    let tiny = GpuScorer::new(ctx, &refs, n, d)
        .unwrap()
        .with_max_flagged(3)
        .with_max_block(16, 16);
    check_against_cpu(&full.volume_matrix(&a).unwrap(), &cpu, (n, n, d, 2));
    check_against_cpu(&tiny.volume_matrix(&a).unwrap(), &cpu, (n, n, d, 2));
    // The diagonal pairs are near-collinear: flagged, and every anchor's best.
    let no_slack = GpuScorer::new(ctx, &refs, n, d)
        .unwrap()
        .with_top_k_slack(0);
    for scorer in [&full, &tiny, &no_slack] {
        let top = scorer.top_k(&a, 3).unwrap();
        for (i, row) in top.iter().enumerate() {
            assert_eq!(row[0].0 as usize, i);
            assert!(
                (row[0].1 as f64 - cpu[i * n + i] as f64).abs() <= 1e-6 * cpu[i * n + i] as f64
            );
        }
    }
}

/// Unit rows sharing a mean direction (uniform on [0, 1) less 0.3: cosines ≈ 0.3), as real
/// embeddings do: every pair fails the fused kernel's f32 bound.
fn shifted_unit_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let x: Vec<f32> = gram_nostd::uniform::Uniform::new(seed)
        .take(n * d)
        .map(|v| (v * 0.5 + 0.5) as f32 - 0.3)
        .collect();
    x.chunks(d)
        .flat_map(|r| {
            let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            r.iter().map(move |v| v / norm)
        })
        .collect()
}

#[test]
fn refinement_pass_scores_aligned_data_on_the_device() {
    let Some(ctx) = context() else { return };
    let (n1, n2, d) = (40, 70, 96);
    let a = shifted_unit_rows(n1, d, 51);
    let (m0, m1) = (shifted_unit_rows(n2, d, 52), shifted_unit_rows(n2, d, 53));
    let refs = [m0.as_slice(), m1.as_slice()];
    let cpu = cpu_matrix(&a, &refs, n2, d);
    let plain = GpuScorer::new(ctx, &refs, n2, d)
        .unwrap()
        .with_refinement(false);
    check_against_cpu(&plain.volume_matrix(&a).unwrap(), &cpu, (n1, n2, d, 2));
    let host_plain = plain.host_pairs_scored();
    assert!(
        host_plain > n1 * n2 / 2,
        "data not aligned enough ({host_plain})"
    );
    for variant in VARIANTS {
        let refined = GpuScorer::new(ctx, &refs, n2, d)
            .unwrap()
            .with_kernel_variant(variant)
            .with_refinement(true)
            .with_max_block(16, 32);
        check_against_cpu(&refined.volume_matrix(&a).unwrap(), &cpu, (n1, n2, d, 2));
        let host = refined.host_pairs_scored();
        if !ctx.has_f64() {
            eprintln!("SKIPPED: this adapter has no f64 in shaders: no refinement pass");
            return;
        }
        // What still fails is the f32 epilogue on the most aligned pairs (r² small).
        assert!(
            host * 20 < n1 * n2,
            "{variant:?}: {host} pairs left to the host"
        );
        for k in [1, 7] {
            let got = refined.top_k(&a, k).unwrap();
            for (i, want) in cpu_top_k(&cpu, n2, k).into_iter().enumerate() {
                let have: Vec<u32> = got[i].iter().map(|p| p.0).collect();
                assert_eq!(have, want, "{variant:?}: anchor {i}, k {k}");
            }
        }
    }
    // Near-collinear pairs still fail after refinement and are scored exactly on the host.
    let (a, m0, m1) = near_collinear(24, 32, 1e-4);
    let refs = [m0.as_slice(), m1.as_slice()];
    let refined = GpuScorer::new(ctx, &refs, 24, 32)
        .unwrap()
        .with_refinement(true);
    let cpu = cpu_matrix(&a, &refs, 24, 32);
    check_against_cpu(&refined.volume_matrix(&a).unwrap(), &cpu, (24, 24, 32, 2));
    assert!(
        refined.host_pairs_scored() >= 24,
        "the diagonal should reach the host"
    );
}

/// The CPU's top k of every row of a volume matrix, ties by index.
fn cpu_top_k(cpu: &[f32], n2: usize, k: usize) -> Vec<Vec<u32>> {
    cpu.chunks_exact(n2)
        .map(|row| {
            let mut order: Vec<u32> = (0..n2 as u32).collect();
            order.sort_by(|&x, &y| row[x as usize].total_cmp(&row[y as usize]).then(x.cmp(&y)));
            order.truncate(k);
            order
        })
        .collect()
}

#[test]
fn top_k_stays_exact_when_every_pair_fails_its_bound() {
    let Some(ctx) = context() else { return };
    // Every candidate spans nearly the same plane and every anchor lies nearly in it: all
    // pairs fail the kernel's bound and are ranked by lower bounds that may be far below their
    // volumes. The selection must still give the CPU's top-k: by recomputing the failed
    // pairs it kept, and by scoring whole rows where that cannot be vouched for.
    let (n1, n2, d) = (12, 150, 32);
    let (u, w) = (pseudo(d, 31), pseudo(d, 32));
    let (x, y, z) = (pseudo(n2 * d, 33), pseudo(n2 * d, 34), pseudo(n1 * d, 35));
    let spread = |j: usize| 1e-4 * (1 + (j * 37) % 101) as f32;
    let m0: Vec<f32> = (0..n2 * d)
        .map(|e| u[e % d] + spread(e / d) * x[e])
        .collect();
    let m1: Vec<f32> = (0..n2 * d)
        .map(|e| w[e % d] + spread(e / d) * y[e])
        .collect();
    let a: Vec<f32> = (0..n1 * d)
        .map(|e| (0.3 + 0.1 * (e / d) as f32) * u[e % d] - 0.7 * w[e % d] + 1e-4 * z[e])
        .collect();
    let refs = [m0.as_slice(), m1.as_slice()];
    let cpu = cpu_matrix(&a, &refs, n2, d);
    for slack in [0, 8] {
        let scorer = GpuScorer::new(ctx, &refs, n2, d)
            .unwrap()
            .with_top_k_slack(slack)
            .with_max_block(8, 64);
        for k in [1, 5] {
            let got = scorer.top_k(&a, k).unwrap();
            for (i, want) in cpu_top_k(&cpu, n2, k).into_iter().enumerate() {
                let have: Vec<u32> = got[i].iter().map(|p| p.0).collect();
                assert_eq!(have, want, "anchor {i}, k {k}, slack {slack}");
                for &(j, v) in &got[i] {
                    assert_eq!(v, cpu[i * n2 + j as usize]);
                }
            }
        }
        if slack == 0 {
            assert!(scorer.host_rows_scored() > 0, "the host path was not taken");
        }
    }
}

#[test]
fn top_k_equals_the_cpu_top_k_with_ties() {
    let Some(ctx) = context() else { return };
    let (n1, n2, d) = (19, 300, 24);
    let a = pseudo(n1 * d, 7);
    let mut m0 = pseudo(n2 * d, 8);
    let mut m1 = pseudo(n2 * d, 9);
    // Candidates 40..=44 duplicate candidate 3: exact ties, broken by index on both sides.
    for j in 40..45 {
        let (src, dst) = (3 * d..4 * d, j * d..(j + 1) * d);
        m0.copy_within(src.clone(), dst.start);
        m1.copy_within(src, dst.start);
    }
    // Anchor 0 aligned with candidate 3 so the duplicates land in its top-k.
    let mut a = a;
    for l in 0..d {
        a[l] = m0[3 * d + l] + m1[3 * d + l];
    }
    let refs = [m0.as_slice(), m1.as_slice()];
    let scorer = GpuScorer::new(ctx, &refs, n2, d)
        .unwrap()
        .with_max_block(8, 64);
    let cpu = cpu_matrix(&a, &refs, n2, d);
    assert!(
        cpu.iter().filter(|&&x| x > 0.0).count() > n1 * n2 / 2,
        "degenerate data"
    );
    for k in [1usize, 6, 10, 128] {
        let got = scorer.top_k(&a, k).unwrap();
        for i in 0..n1 {
            let row = &cpu[i * n2..(i + 1) * n2];
            let mut order: Vec<u32> = (0..n2 as u32).collect();
            order.sort_by(|&x, &y| row[x as usize].total_cmp(&row[y as usize]).then(x.cmp(&y)));
            let want: Vec<u32> = order[..k].to_vec();
            let have: Vec<u32> = got[i].iter().map(|p| p.0).collect();
            assert_eq!(have, want, "anchor {i}, k {k}");
            for &(j, v) in &got[i] {
                assert!(
                    (v - row[j as usize]).abs() <= 1e-6 * row[j as usize].max(1e-30),
                    "{v} vs {}",
                    row[j as usize]
                );
            }
        }
    }
    assert!(scorer.top_k(&a, 0).is_err());
    assert!(scorer.top_k(&a, 129).is_err());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let Some(ctx) = context() else { return };
    let m = pseudo(12, 1);
    let scorer = GpuScorer::new(ctx, &[&m], 3, 4).unwrap();
    assert!(scorer.volume_matrix(&[1.0, f32::NAN, 0.0, 0.0]).is_err());
    assert!(scorer.volume_matrix(&[1.0, 0.0, 0.0]).is_err());
    assert!(scorer.volume_matrix(&[]).is_err());
    assert!(GpuScorer::new(ctx, &[&m[..11]], 3, 4).is_err());
    // A zero anchor and a duplicated candidate give exact zeros.
    let v = scorer.volume_matrix(&[0.0; 4]).unwrap();
    assert_eq!(v, vec![0.0; 3]);
}
