//! The C functions, called from Rust, against gram-nostd itself (the C program in `tests/c`
//! checks the same from C on a Cortex-M4 under QEMU).

use gram_capi::*;
use gram_nostd::{Candidate, candidate_at, score_row, volume};
use std::mem::MaybeUninit;
use std::ptr::{null, null_mut};

fn rows(seed: u32, count: usize, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..count * n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn empty_candidates(count: usize) -> Vec<GramCandidate> {
    // Zeroed storage: what a C `static GramCandidate c[N];` holds before preparation.
    (0..count)
        .map(|_| unsafe { MaybeUninit::zeroed().assume_init() })
        .collect()
}

#[test]
fn volume_and_row_match_gram_nostd_bit_for_bit() {
    let (n, count) = (24, 5);
    let anchor = rows(1, 1, n);
    let (m0, m1) = (rows(2, count, n), rows(3, count, n));
    let ptrs = [anchor.as_ptr(), m0.as_ptr(), m1.as_ptr()];
    let mut v = 0.0f64;
    assert_eq!(
        unsafe { gram_volume_f32(ptrs.as_ptr(), 3, n, &mut v) },
        GramStatus::Ok
    );
    assert_eq!(v, volume(&[&anchor[..], &m0[..n], &m1[..n]]).unwrap());

    let mods = [m0.as_ptr(), m1.as_ptr()];
    let mut cands = empty_candidates(count);
    let st = unsafe { gram_candidates_prepare_f32(mods.as_ptr(), 2, n, count, cands.as_mut_ptr()) };
    assert_eq!(st, GramStatus::Ok);
    let mut out = vec![0.0f32; count];
    let mut stats = GramScoreStats::default();
    let st = unsafe {
        gram_score_row_f32(
            anchor.as_ptr(),
            n,
            mods.as_ptr(),
            2,
            cands.as_ptr(),
            count,
            out.as_mut_ptr(),
            &mut stats,
        )
    };
    assert_eq!(st, GramStatus::Ok);
    let rust_mods = [&m0[..], &m1[..]];
    let rust: Vec<Candidate> = (0..count)
        .map(|j| candidate_at(&rust_mods, n, j).unwrap())
        .collect();
    let mut want = vec![0.0f32; count];
    score_row(&anchor, &rust_mods, &rust, &mut want).unwrap();
    assert_eq!(out, want);
}

#[test]
fn candidates_round_trip_through_bytes() {
    let n = 8;
    let (a, b) = (rows(4, 1, n), rows(5, 1, n));
    let ptrs = [a.as_ptr(), b.as_ptr()];
    let mut c = empty_candidates(2);
    assert_eq!(
        unsafe { gram_candidate_new_f32(ptrs.as_ptr(), 2, n, &mut c[0]) },
        GramStatus::Ok
    );
    let len = gram_candidate_bytes_len(2);
    assert_eq!(len, 104);
    let mut bytes = vec![0u8; len];
    assert_eq!(
        unsafe { gram_candidate_to_bytes(&c[0], bytes.as_mut_ptr(), len) },
        GramStatus::Ok
    );
    assert_eq!(
        unsafe { gram_candidate_from_bytes(bytes.as_ptr(), len, &mut c[1]) },
        GramStatus::Ok
    );
    let anchor = rows(6, 1, n);
    let mods = [a.as_ptr(), b.as_ptr()];
    let mut out = [0.0f32; 2];
    let st = unsafe {
        gram_score_row_f32(
            anchor.as_ptr(),
            n,
            mods.as_ptr(),
            2,
            c.as_ptr(),
            1,
            out.as_mut_ptr(),
            null_mut(),
        )
    };
    assert_eq!(st, GramStatus::Ok);
    let st = unsafe {
        gram_score_row_f32(
            anchor.as_ptr(),
            n,
            mods.as_ptr(),
            2,
            c[1..].as_ptr(),
            1,
            out[1..].as_mut_ptr(),
            null_mut(),
        )
    };
    assert_eq!(st, GramStatus::Ok);
    assert_eq!(out[0].to_bits(), out[1].to_bits());
    bytes[20] ^= 1;
    assert_eq!(
        unsafe { gram_candidate_from_bytes(bytes.as_ptr(), len, &mut c[1]) },
        GramStatus::InvalidParameter
    );
    assert_eq!(
        unsafe { gram_candidate_from_bytes(bytes.as_ptr(), len - 1, &mut c[1]) },
        GramStatus::DimensionMismatch
    );
}

#[test]
fn bad_input_gives_a_status_not_a_crash() {
    let n = 4;
    let a = [1.0f32, 0.0, 0.0, 0.0];
    let nan = [f32::NAN, 0.0, 0.0, 0.0];
    let mut v = 0.0;
    let with_null = [a.as_ptr(), null()];
    assert_eq!(
        unsafe { gram_volume_f32(with_null.as_ptr(), 2, n, &mut v) },
        GramStatus::NullPointer
    );
    assert_eq!(
        unsafe { gram_volume_f32(null(), 2, n, &mut v) },
        GramStatus::NullPointer
    );
    let ptrs = [a.as_ptr(), nan.as_ptr()];
    assert_eq!(
        unsafe { gram_volume_f32(ptrs.as_ptr(), 2, n, &mut v) },
        GramStatus::NonFinite
    );
    assert_eq!(
        unsafe { gram_volume_f32(ptrs.as_ptr(), 17, n, &mut v) },
        GramStatus::TooManyVectors
    );
    // Never-prepared storage is refused, not read.
    let cands = empty_candidates(1);
    let mods = [a.as_ptr()];
    let mut out = [0.0f32];
    let st = unsafe {
        gram_score_row_f32(
            a.as_ptr(),
            n,
            mods.as_ptr(),
            1,
            cands.as_ptr(),
            1,
            out.as_mut_ptr(),
            null_mut(),
        )
    };
    assert_eq!(st, GramStatus::InvalidCandidate);
    let msg = unsafe { std::ffi::CStr::from_ptr(gram_status_message(st as i32)) };
    assert!(msg.to_str().unwrap().contains("no prepared candidate"));
}
