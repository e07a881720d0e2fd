// Main loop for GPUs: per K-step (16 floats), the workgroup stages its TILE_A anchors and
// TILE_C·M basis rows in workgroup memory with one cooperative, coalesced pass, then every
// invocation runs its TM × TC·M register tile from there. Rows are padded by one vec4 (KP) so
// that invocations reading different rows hit different banks.

const TCM: u32 = TC * M;           // cross dots per anchor per invocation
const ACC: u32 = TM * TCM;         // accumulators per invocation
const TILE_A: u32 = TM * WY;       // anchors per workgroup
const TILE_C: u32 = TC * WX;       // candidates per workgroup
const KP: u32 = KS4 + 1u;
const ROWS_B: u32 = TILE_C * M;
const THREADS: u32 = WX * WY;

var<workgroup> a_tile: array<vec4<f32>, TILE_A * KP>;
var<workgroup> b_tile: array<vec4<f32>, ROWS_B * KP>;

@compute @workgroup_size(WX, WY)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let a0 = wg.y * TILE_A;
    let b0 = wg.x * ROWS_B;
    var acc: array<f32, ACC>;
    for (var k0 = 0u; k0 < p.d4; k0 += KS4) {
        for (var x = li; x < TILE_A * KS4; x += THREADS) {
            a_tile[(x / KS4) * KP + x % KS4] = anchors[(a0 + x / KS4) * p.d4 + k0 + x % KS4];
        }
        for (var x = li; x < ROWS_B * KS4; x += THREADS) {
            b_tile[(x / KS4) * KP + x % KS4] = basis[(b0 + x / KS4) * p.d4 + k0 + x % KS4];
        }
        workgroupBarrier();
        // Explicitly zeroed: some naga versions hoist an uninitialised loop-local `var`
        // out of the loop without re-zeroing it each iteration.
        var part = array<f32, ACC>();
        for (var x = 0u; x < KS4; x++) {
            var av: array<vec4<f32>, TM>;
            for (var r = 0u; r < TM; r++) {
                av[r] = a_tile[(lid.y + WY * r) * KP + x];
            }
            for (var c = 0u; c < TCM; c++) {
                let bv = b_tile[((lid.x + WX * (c / M)) * M + c % M) * KP + x];
                for (var r = 0u; r < TM; r++) {
                    part[r * TCM + c] += dot(av[r], bv);
                }
            }
        }
        for (var q = 0u; q < ACC; q++) {
            acc[q] += part[q];
        }
        workgroupBarrier();
    }
    // Invocation (x, y) holds anchors ia + WY·r and candidates jb + WX·c: consecutive
    // invocations along x write consecutive columns (coalesced).
    let ia = wg.y * TILE_A + lid.y;
    let jb = wg.x * TILE_C + lid.x;
    for (var r = 0u; r < TM; r++) {
        for (var c = 0u; c < TC; c++) {
            var dots: array<f32, M>;
            for (var t = 0u; t < M; t++) {
                dots[t] = acc[r * TCM + c * M + t];
            }
            store_pair(ia + WY * r, jb + WX * c, dots);
        }
    }
}
