//! Put the target's memory map where the runtime's link.x looks for `memory.x`.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let map = if arch.starts_with("riscv") {
        "memory-riscv.x"
    } else {
        "memory-arm.x"
    };
    fs::copy(map, out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory-arm.x");
    println!("cargo:rerun-if-changed=memory-riscv.x");
}
