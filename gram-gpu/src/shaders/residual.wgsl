// Per-pair residual norms for GRAM volumes.
//
// For anchor i (a unit vector â_i) and candidate j (an orthonormal basis Q_j of its k−1
// vectors, computed in f64 on the host), writes ‖â_i − Q_j Q_jᵀ â_i‖; the host multiplies by
// vol(M_j)·‖a_i‖. Two passes (classical Gram–Schmidt with re-orthogonalisation): pass 1 forms
// c = Q_jᵀ â; pass 2 forms r = â − Q_j c, ‖r‖² and e = Q_jᵀ r, and the corrected residual is
// ‖r − Q_j e‖² = ‖r‖² − ‖e‖². Plain f32 arithmetic suffices (no error-free transformations a
// shader compiler could contract away): the result is accurate to about 2^-24·‖â‖/‖r‖
// relative, i.e. 1e-3 at a normalised residual of 1e-4.
//
// Workgroup: an 8×8 tile of (anchor, candidate) pairs, one pair per invocation; the anchors'
// and candidates' elements are staged through workgroup memory in chunks of 16.

struct Params {
    n: u32,      // vector length
    m: u32,      // vectors per candidate (k − 1), ≤ 15
    rows: u32,   // anchors in this block
    cols: u32,   // candidates in this block
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> anchors: array<f32>;        // rows × n
@group(0) @binding(2) var<storage, read> basis: array<f32>;          // cols × m × n
@group(0) @binding(3) var<storage, read_write> residual: array<f32>; // rows × cols

const TI: u32 = 8u;
const TJ: u32 = 8u;
const CH: u32 = 16u;
const MMAX: u32 = 15u;

var<workgroup> a_tile: array<f32, 128>;   // TI × CH
var<workgroup> q_tile: array<f32, 1920>;  // TJ × MMAX × CH

fn load_chunk(row0: u32, col0: u32, l0: u32, li: u32) {
    for (var x = li; x < TI * CH; x += 64u) {
        let i = row0 + x / CH;
        let l = l0 + x % CH;
        var v = 0.0;
        if (i < p.rows && l < p.n) {
            v = anchors[i * p.n + l];
        }
        a_tile[x] = v;
    }
    let per_cand = p.m * CH;
    for (var x = li; x < TJ * per_cand; x += 64u) {
        let j = col0 + x / per_cand;
        let t = (x % per_cand) / CH;
        let l = l0 + x % CH;
        var v = 0.0;
        if (j < p.cols && l < p.n) {
            v = basis[(j * p.m + t) * p.n + l];
        }
        q_tile[x] = v;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wg.x * TI;
    let col0 = wg.y * TJ;
    let ti = li / TJ;
    let tj = li % TJ;
    let qbase = tj * p.m * CH;

    // Pass 1: c = Qᵀ â, summed per chunk then accumulated (blocked summation).
    var c: array<f32, 15>;
    for (var l0 = 0u; l0 < p.n; l0 += CH) {
        load_chunk(row0, col0, l0, li);
        workgroupBarrier();
        for (var t = 0u; t < p.m; t++) {
            var s = 0.0;
            for (var x = 0u; x < CH; x++) {
                s += q_tile[qbase + t * CH + x] * a_tile[ti * CH + x];
            }
            c[t] += s;
        }
        workgroupBarrier();
    }

    // Pass 2: r = â − Q c, ‖r‖² and e = Qᵀ r.
    var rr = 0.0;
    var e: array<f32, 15>;
    for (var l0 = 0u; l0 < p.n; l0 += CH) {
        load_chunk(row0, col0, l0, li);
        workgroupBarrier();
        var rr_chunk = 0.0;
        for (var x = 0u; x < CH; x++) {
            var r = a_tile[ti * CH + x];
            for (var t = 0u; t < p.m; t++) {
                r -= c[t] * q_tile[qbase + t * CH + x];
            }
            rr_chunk += r * r;
            for (var t = 0u; t < p.m; t++) {
                e[t] += q_tile[qbase + t * CH + x] * r;
            }
        }
        rr += rr_chunk;
        workgroupBarrier();
    }
    var ee = 0.0;
    for (var t = 0u; t < p.m; t++) {
        ee += e[t] * e[t];
    }
    let i = row0 + ti;
    let j = col0 + tj;
    if (i < p.rows && j < p.cols) {
        residual[i * p.cols + j] = sqrt(max(rr - ee, 0.0));
    }
}
