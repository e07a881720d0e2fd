//! Target facts that stable `cfg` does not expose: whether the target has hardware f64, and
//! whether its single-precision FPU has fused multiply-add and square root instructions
//! (Arm's `vfp4`/`fp64` and RISC-V's `f`/`d` are unstable `target_feature`s, invisible to
//! `cfg` on stable Rust). Decided from the target triple, which Cargo passes as `TARGET`.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(gram_no_f64_hw)");
    println!("cargo:rustc-check-cfg=cfg(gram_arm_vfp4)");
    println!("cargo:rustc-check-cfg=cfg(gram_riscv_f)");
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let arch = target.split('-').next().unwrap_or("");
    // Cortex-M4F/M33/M35P/M55 (and M7 in its single-precision build): an FPU with VFPv4 or
    // later, single precision only; the `eabihf` M-profile triples all assume it.
    let arm_vfp4 = target.ends_with("eabihf")
        && (arch.starts_with("thumbv7em")
            || arch.starts_with("thumbv8m.main")
            || arch.starts_with("thumbv8.1m"));
    // RISC-V: the ISA string says which extensions the triple assumes (imafc: single only).
    let riscv_ext = arch
        .strip_prefix("riscv32")
        .or_else(|| arch.strip_prefix("riscv64"));
    let riscv_f = riscv_ext.is_some_and(|e| e.contains('f') || e.starts_with('g'));
    let riscv_d = riscv_ext.is_some_and(|e| e.contains('d') || e.starts_with('g'));
    // Targets without f64 hardware: every 32-bit Arm microcontroller triple (thumbv6m … v8.1m;
    // their FPUs, where present, are single precision), RISC-V without `d`, Xtensa, AVR, MSP430.
    let no_f64_hw = arch.starts_with("thumb")
        || (riscv_ext.is_some() && !riscv_d)
        || arch.starts_with("xtensa")
        || arch == "avr"
        || arch == "msp430";
    if no_f64_hw {
        println!("cargo:rustc-cfg=gram_no_f64_hw");
    }
    if arm_vfp4 {
        println!("cargo:rustc-cfg=gram_arm_vfp4");
    }
    if riscv_f {
        println!("cargo:rustc-cfg=gram_riscv_f");
    }
}
