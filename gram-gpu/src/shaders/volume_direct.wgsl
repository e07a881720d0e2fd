// Main loop for CPU-type adapters (lavapipe, SwiftShader): every invocation reads its operands
// straight from storage with vec4 loads. Measured on lavapipe, this beat staging through
// workgroup memory 6× for a plain GEMM: the CPU's caches do the staging, and barriers run
// serially there. Anchors and basis rows are zero-padded to whole workgroup tiles and D to a
// multiple of 16, so the loop needs no bounds checks.

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ia = wg.y * TILE_A + lid.y;
    let jb = wg.x * TILE_C + lid.x;
    var acc: array<f32, ACC>;
    for (var k0 = 0u; k0 < p.d4; k0 += KS4) {
        // Blocked summation: 16 floats summed apart, then added (tightens the error bound).
        var part: array<f32, ACC>;
        for (var x = 0u; x < KS4; x++) {
            var av: array<vec4<f32>, TM>;
            for (var r = 0u; r < TM; r++) {
                av[r] = anchors[(ia + WY * r) * p.d4 + k0 + x];
            }
            for (var c = 0u; c < TCM; c++) {
                let bv = basis[((jb + WX * (c / M)) * M + c % M) * p.d4 + k0 + x];
                for (var r = 0u; r < TM; r++) {
                    part[r * TCM + c] += dot(av[r], bv);
                }
            }
        }
        for (var q = 0u; q < ACC; q++) {
            acc[q] += part[q];
        }
    }
    finish(ia, jb, &acc);
}
