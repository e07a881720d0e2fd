//! Criterion benchmarks of the gram crates; see `benches/`.
