//! The `gram` argument parser on arbitrary argument lists (NUL-separated): it must return a
//! command, an info text or a one-line `error:` message — never panic or exit.
#![no_main]

use gram_host::cli::{Parsed, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args = std::iter::once("gram").chain(text.split('\0'));
    if let Parsed::Error(line) = parse(args) {
        assert!(line.starts_with("error:"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
});
