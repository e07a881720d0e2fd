// One pair's volume from its k − 1 cross dots, with the a-posteriori bound (see
// volume_common.wgsl for the quantities): shared by the fused kernel and the refinement pass.
// `eta`: the error of the dots as computed, relative to ‖a'‖‖q‖, before Q_j's own (η_j in
// `ci.y`); `tol`: the relative tolerance of the result.

const U: f32 = 0x1p-24f;           // 2^-24, f32's unit roundoff
const F32_MIN_NORMAL: f32 = 0x1p-126f;
const F32_MAX: f32 = 0x1.fffffep+127f;

// The volume of one pair, whether the fast path's bound holds (y = 0: recompute) and a lower
// bound on the exact volume (z; 0 where nothing better is known).
fn pair_volume(ai: vec2<f32>, ci: vec2<f32>, dots: array<f32, M>, eta: f32, tol: f32) -> vec3<f32> {
    let na2 = ai.x;
    let vol_m = ci.x;
    if (vol_m == 0.0 || na2 == 0.0) {
        return vec3<f32>(0.0, 1.0, 0.0);
    }
    let delta = (eta + ci.y) * sqrt(na2);
    var cc = 0.0;
    var err = 0.0;
    for (var t = 0u; t < M; t++) {
        let c = dots[t];
        cc += c * c;
        err += (2.0 * abs(c) + delta) * delta;
    }
    let r2 = na2 - cc;
    let e = err + U * (na2 + f32(M + 1u) * cc + abs(r2));
    let v = sqrt(max(r2, 0.0)) * vol_m * ai.y;
    // 1.01: the bound's own rounding. A NaN vol(M) makes every comparison false.
    let ok = r2 > 0.0 && 0.505 * e <= tol * r2 && abs(v) >= F32_MIN_NORMAL && abs(v) <= F32_MAX;
    // The exact r² is at least r² − 1.01·E; the roundings after it (the square root, vol(M) to
    // f32, two products) are under 1e-5 relative. Anything unusual (no fast path: vol(M) NaN;
    // under- or overflow) gives 0, which is always a lower bound.
    let lo = sqrt(max(r2 - 1.02 * e, 0.0)) * vol_m * ai.y * (1.0 - 1e-5);
    let lo_ok = vol_m > 0.0 && lo >= F32_MIN_NORMAL && lo <= F32_MAX;
    return vec3<f32>(v, select(0.0, 1.0, ok), select(0.0, lo, lo_ok));
}
