// Running per-anchor top-m (smallest keys first, ties by smaller candidate index) over one
// block of candidates' volumes, written by the volume kernel in its `bounds` mode: a value with
// the sign bit set is a pair whose bound failed, and its magnitude a lower bound on its volume
// (the key it is ranked by). Entries are kept as written, sign included, so the host knows
// which ones to recompute. One invocation per anchor keeps a sorted list of m entries in storage
// and inserts each block entry that beats its last one (after the first block, few do). Lists
// start as (+inf, 0xffffffff).

struct Params {
    rows: u32,
    cols: u32,
    k: u32,          // m, the list length
    col_offset: u32, // global index of this block's first candidate
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> volume: array<f32>;         // rows × cols
@group(0) @binding(2) var<storage, read_write> best_key: array<f32>; // rows × m, as written
@group(0) @binding(3) var<storage, read_write> best_idx: array<u32>; // rows × m

fn magnitude(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) & 0x7fffffffu);
}

fn before(ka: f32, ia: u32, kb: f32, ib: u32) -> bool {
    return ka < kb || (ka == kb && ia < ib);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.rows) {
        return;
    }
    let base = i * p.k;
    var last_key = magnitude(best_key[base + p.k - 1u]);
    var last_idx = best_idx[base + p.k - 1u];
    for (var j = 0u; j < p.cols; j++) {
        let raw = volume[i * p.cols + j];
        let key = magnitude(raw);
        let idx = p.col_offset + j;
        if (!before(key, idx, last_key, last_idx)) {
            continue;
        }
        var pos = p.k - 1u;
        while (pos > 0u && before(key, idx, magnitude(best_key[base + pos - 1u]), best_idx[base + pos - 1u])) {
            best_key[base + pos] = best_key[base + pos - 1u];
            best_idx[base + pos] = best_idx[base + pos - 1u];
            pos -= 1u;
        }
        best_key[base + pos] = raw;
        best_idx[base + pos] = idx;
        last_key = magnitude(best_key[base + p.k - 1u]);
        last_idx = best_idx[base + p.k - 1u];
    }
}
