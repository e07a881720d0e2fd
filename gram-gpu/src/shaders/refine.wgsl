// Refinement pass (adapters with f64 in shaders; what GPUs get): the pairs of one block whose
// bound failed in the fused kernel — written there in its `bounds` mode, as −(lower bound) —
// get their k − 1 cross dots again in f64, and the bound again with that precision. Anchors
// nearly in the candidates' span still fail and stay marked (−1, or a lower bound) for the host's
// exact path; the rest (the bulk where embeddings share a mean direction: at cosines ~0.3 every
// pair fails the f32 bound) get their volume here instead of on the host.
//
// Why f64 and not compensated f32: WGSL marks no float operation exact, and shader compilers
// rewrite (a + b) − a as b (Mesa's NIR does; a TwoSum version of this pass came out 2–11·2^-24
// off on lavapipe). An f64 sum needs no such care: its error is ≤ (D + 4)·2^-53·Σ|a_i q_i| in
// any order, with or without fused multiply-adds, so the dot is within 1.01·u·‖a'‖ once
// rounded to f32 (`Params::eta`, prepare.rs's `refine_dot_rel_err`).
// One invocation per pair of the block; unmarked pairs return at once.

struct Params {
    d4: u32,
    rows: u32,
    cols: u32,
    bounds: u32, // 1: a pair that still fails is written as −(lower bound) (top-k), else −1
    tol: f32,
    eta: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> anchors: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> basis: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> anchor_info: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> cand_info: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// q_t·a' for pair (i, j) of the block, summed in f64 and rounded to f32.
fn precise_dot(i: u32, j: u32, t: u32) -> f32 {
    var acc = f64(0.0);
    let ra = i * p.d4;
    let rb = (j * M + t) * p.d4;
    for (var x = 0u; x < p.d4; x++) {
        acc += dot(vec4<f64>(anchors[ra + x]), vec4<f64>(basis[rb + x]));
    }
    return f32(acc);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    if (i >= p.rows || j >= p.cols) {
        return;
    }
    let at = i * p.cols + j;
    if ((bitcast<u32>(out[at]) & 0x80000000u) == 0u) {
        return;
    }
    var dots: array<f32, M>;
    for (var t = 0u; t < M; t++) {
        dots[t] = precise_dot(i, j, t);
    }
    let pv = pair_volume(anchor_info[i], cand_info[j], dots, p.eta, p.tol);
    if (pv.y != 0.0) {
        out[at] = pv.x;
    } else if (p.bounds != 0u) {
        out[at] = bitcast<f32>(bitcast<u32>(pv.z) | 0x80000000u);
    } else {
        out[at] = -1.0; // for the host (the kernel wrote −lower bound, which may be −0)
    }
}
