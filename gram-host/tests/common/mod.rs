//! Helpers shared by the integration tests of the `gram` binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn gram(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gram"))
        .args(args)
        .output()
        .unwrap()
}

/// Raw .npy bytes for any descr/shape (to build malformed and exotic files).
pub fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend_from_slice(data);
    h
}

pub fn f32_npy(rows: usize, cols: usize, vals: &[f32]) -> Vec<u8> {
    assert_eq!(vals.len(), rows * cols);
    let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy_bytes("<f4", false, &format!("({rows}, {cols})"), &data)
}

pub fn pseudo(len: usize, seed: u64) -> Vec<f32> {
    gram_nostd::uniform::Uniform::new(seed)
        .take(len)
        .map(|x| x as f32)
        .collect()
}

pub fn read_npy_f32(p: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec().unwrap())
}

/// Run a failing command and check the contract: exit 2, one `error:` line mentioning
/// `file` and `problem`, no output file.
pub fn assert_refused(args: &[&str], out: &Path, file: &str, problem: &str) {
    let o = gram(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
    assert!(stderr.contains(file), "{stderr} should name {file}");
    assert!(
        stderr.to_lowercase().contains(&problem.to_lowercase()),
        "{stderr} should say {problem}"
    );
    assert!(o.stdout.is_empty());
    assert!(!out.exists(), "partial output left behind");
    let dir = out.parent().unwrap();
    let stray: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

pub fn read_npy_u32(p: &Path) -> (Vec<u64>, Vec<u32>) {
    let bytes = std::fs::read(p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec().unwrap())
}

/// Runs a `--backend gpu` command; None (after printing why) when no adapter exists and
/// GRAM_REQUIRE_GPU is not 1.
pub fn gram_gpu(args: &[&str]) -> Option<Output> {
    let o = gram(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() && stderr.contains("no GPU adapter") {
        assert_ne!(
            std::env::var("GRAM_REQUIRE_GPU").as_deref(),
            Ok("1"),
            "GRAM_REQUIRE_GPU=1 but {stderr}"
        );
        eprintln!("SKIPPED (no GPU adapter): {stderr}");
        return None;
    }
    Some(o)
}
