//! A tiny deterministic generator for test data, benchmarks and firmware (no_std, no deps).

/// xorshift64 stream of f64 values uniform in (−0.5, 0.5). Distinct seeds give distinct
/// streams (the seed is mixed first, so neighbouring seeds do not collide). Not for
/// cryptography or statistics; for reproducible inputs.
#[derive(Clone, Debug)]
pub struct Uniform(u64);

impl Uniform {
    pub fn new(seed: u64) -> Uniform {
        Uniform(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
}

impl Iterator for Uniform {
    type Item = f64;
    fn next(&mut self) -> Option<f64> {
        let s = &mut self.0;
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        Some((*s >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
    }
}
