// Fused GRAM volume kernel, shared part: bindings and the per-pair epilogue.
//
// The host prepends the specialisation constants (device.rs, `Specialisation::header`):
//   M   vectors per candidate (k − 1), TM anchors and TC candidates per invocation,
//   WX × WY invocations per workgroup (x along candidates, y along anchors),
//   RAW  true for the reference GEMM (write the cross dots, no epilogue).
// and then one of two main loops: `volume_staged.wgsl` (operand tiles staged through workgroup
// memory, register tile in arrays the driver unrolls; for GPUs) or the direct loop kernel.rs
// writes out fully unrolled (operands read straight from storage, a large register tile in
// named scalars; for CPU-type adapters, see there why).
//
// What a pair computes. The host scales anchor i by a power of two (exact): a' = 2^e·a, and
// gives ‖a'‖² (f64 rounded to f32) and 2^-e; candidate j is an orthonormal basis Q_j of its
// k−1 vectors (f64 on the host, rounded to f32), vol(M_j) and η_j, the bound on the error of
// a cross dot q_t·a' relative to ‖a'‖ that Q_j brings (its rounding to f32, its own error);
// p.eta adds this main loop's summation error (prepare.rs, `kernel_dot_rel_err`).
// The invocation accumulates c_t = q_t·a' for its TM × TC pairs (k − 1 dots each) as a
// register-tiled GEMM, then per pair:
//   r² = ‖a'‖² − Σ c_t²,   vol = vol(M_j) · sqrt(r²) · 2^-e,
// with the a-posteriori bound of gram-nostd's `Candidate::pair_volume` on the error of r²:
//   E = Σ_t (2|c_t| + δ)·δ + u·(‖a'‖² + (M+1)·Σc_t² + |r²|),   δ = (η + η_j)·‖a'‖,
// and keeps the pair when ½E/r² ≤ tol (the host's tolerance less the roundings after r²).
// A pair that fails (anchor nearly in span(Q_j): cancellation), or whose candidate has no fast
// path (vol(M_j) = NaN), or whose volume leaves f32's normal range, is written as −1 and
// appended to `flagged`; the host recomputes it in f64. For top-k (`bounds` = 1) a failing pair
// is instead written as −lo, lo ≥ 0 a lower bound on its volume (sign bit set, −0 included) and
// not listed: the selection ranks it by lo and the host recomputes only the few it keeps.
// Exact zeros: a degenerate candidate (vol(M_j) = 0) or a zero anchor give 0.

struct Params {
    d4: u32,    // vec4s per row: D padded with zeros to a multiple of 16 floats, / 4
    rows: u32,  // anchors in this block (output rows)
    cols: u32,  // candidates in this block (output columns)
    cap: u32,   // capacity of `flagged` in pairs
    col0: u32,  // global index of this block's first candidate (written into `flagged`)
    tol: f32,   // relative tolerance of the fast path
    bounds: u32, // 1: write failing pairs as −(lower bound) instead of listing them (top-k)
    eta: f32,    // the main loop's cross-dot error relative to ‖a'‖‖q‖
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> anchors: array<vec4<f32>>;      // rows (padded) × d4
@group(0) @binding(2) var<storage, read> basis: array<vec4<f32>>;        // cols (padded)·M × d4
@group(0) @binding(3) var<storage, read> anchor_info: array<vec2<f32>>;  // (‖a'‖², 2^-e)
@group(0) @binding(4) var<storage, read> cand_info: array<vec2<f32>>;    // (vol(M_j), η_j)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;           // rows × cols (RAW: × M)
@group(0) @binding(6) var<storage, read_write> flagged: array<atomic<u32>>; // [count, (i, j)…]

const KS4: u32 = 4u;               // vec4s per K-step: the partial sums are blocked per 16 floats
// Write pair (i, j) of the block, if it lies inside: its volume, or −1 and a flagged-list
// entry; or, for the reference GEMM, its k − 1 cross dots.
fn store_pair(i: u32, j: u32, dots: array<f32, M>) {
    store_pair_with(i, j, anchor_info[i], cand_info[j], dots);
}

// `store_pair` with the pair's anchor and candidate constants already loaded (every index of
// a block, padding included, is in range: the direct loop loads them once per row and column).
fn store_pair_with(i: u32, j: u32, ai: vec2<f32>, ci: vec2<f32>, dots: array<f32, M>) {
    if (i >= p.rows || j >= p.cols) {
        return;
    }
    if (RAW) {
        for (var t = 0u; t < M; t++) {
            out[(i * p.cols + j) * M + t] = dots[t];
        }
        return;
    }
    let pv = pair_volume(ai, ci, dots, p.eta, p.tol);
    if (pv.y != 0.0) {
        out[i * p.cols + j] = pv.x;
    } else if (p.bounds != 0u) {
        // The sign bit set by hand, not by negation: −0 must survive every compiler.
        out[i * p.cols + j] = bitcast<f32>(bitcast<u32>(pv.z) | 0x80000000u);
    } else {
        // −1 marks it (volumes are never negative). Not NaN: a NaN constant is a shader-creation
        // error in WGSL (Chromium refuses the module; naga accepts it).
        out[i * p.cols + j] = -1.0;
        let slot = atomicAdd(&flagged[0], 1u);
        if (slot < p.cap) {
            atomicStore(&flagged[1u + 2u * slot], i);
            atomicStore(&flagged[2u + 2u * slot], p.col0 + j);
        }
    }
}
