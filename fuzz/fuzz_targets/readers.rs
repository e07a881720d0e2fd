//! gram-host's .npy and safetensors readers on arbitrary bytes: no panic, and whatever is
//! accepted is a consistent, finite, non-empty 2-D float32 matrix.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn check(m: Result<gram_host::input::Matrix, gram_host::input::InputError>) {
    if let Ok(m) = m {
        assert!(m.rows > 0 && m.cols > 0);
        let s = m.as_slice();
        assert_eq!(s.len(), m.rows * m.cols);
        assert!(s.iter().all(|x| x.is_finite()));
        assert_eq!(m.row(m.rows - 1).len(), m.cols);
    }
}

fuzz_target!(|data: &[u8]| {
    check(gram_host::input::parse_npy("fuzz.npy", data.to_vec()));
    check(gram_host::input::parse_safetensors(
        "fuzz.safetensors",
        "t",
        data.to_vec(),
    ));
});
