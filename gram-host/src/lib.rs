#![doc = include_str!("../README.md")]
//!
//! ## gram-host — the `gram` CLI and the CPU backend
//!
//! - [`input`]: .npy (f32/f64/f16) and safetensors embedding matrices, memory-mapped when
//!   possible, validated (shape, finiteness) with errors that name the file.
//! - [`cpu`]: [`cpu::Scorer`], the multi-threaded tiled volume matrix (f32 GEMM cross dots,
//!   gram-nostd candidate factors, a-posteriori error bound, accurate fallback).
//! - [`metrics`]: streaming retrieval ranks and R@k/MedR/MeanR in both directions.
//! - [`output`]: atomic .npy and text output.
//! - [`pair_gram`]: the k×k part of a differentiable volume matrix and its backward pass, for
//!   autograd frameworks that compute the dot products themselves.
//! - [`report`]: `gram report` — alignment diagnostics, plots and report.html.
//! - [`commands`]: what each `gram` subcommand does, callable without the binary.
//! - [`error`]: the one error type, by kind (argument, data, I/O, GPU, usage); its text is
//!   the CLI's `error:` line.
//! - [`cli`]: the argument parser and dispatcher of the `gram` binary.

pub mod cli;
pub mod commands;
pub mod cpu;
pub mod error;
pub mod hits;
pub mod index;
pub mod input;
pub mod metrics;
pub mod missing;
pub mod output;
pub mod pair_gram;
pub mod report;
pub mod simd;
