// Running per-anchor top-k (smallest volumes first, ties by smaller candidate index) over one
// block of candidates' volumes, written by the volume kernel. −1 marks a pair the host
// recomputes: it is never inserted here. One
// invocation per anchor keeps a sorted list of k ≤ 128 entries in storage and inserts each
// block entry that beats its last one (after the first block, few do). Lists start as
// (+inf, 0xffffffff).

struct Params {
    rows: u32,
    cols: u32,
    k: u32,
    col_offset: u32, // global index of this block's first candidate
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> volume: array<f32>;         // rows × cols
@group(0) @binding(2) var<storage, read_write> best_key: array<f32>; // rows × k
@group(0) @binding(3) var<storage, read_write> best_idx: array<u32>; // rows × k

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
    var last_key = best_key[base + p.k - 1u];
    var last_idx = best_idx[base + p.k - 1u];
    for (var j = 0u; j < p.cols; j++) {
        let key = volume[i * p.cols + j];
        let idx = p.col_offset + j;
        if (key < 0.0 || !before(key, idx, last_key, last_idx)) {
            continue;
        }
        var pos = p.k - 1u;
        while (pos > 0u && before(key, idx, best_key[base + pos - 1u], best_idx[base + pos - 1u])) {
            best_key[base + pos] = best_key[base + pos - 1u];
            best_idx[base + pos] = best_idx[base + pos - 1u];
            pos -= 1u;
        }
        best_key[base + pos] = key;
        best_idx[base + pos] = idx;
        last_key = best_key[base + p.k - 1u];
        last_idx = best_idx[base + p.k - 1u];
    }
}
