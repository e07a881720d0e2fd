//! A prepared [`Candidate`] as bytes, so candidates can be factored on a host and flashed to a
//! device (or stored anywhere) and loaded there without preparing them again.
//!
//! Layout, little-endian, [`Candidate::bytes_len`]`(m)` bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `GRMC` |
//! | 4 | 1 | format version ([`Candidate::BYTES_VERSION`]) |
//! | 5 | 1 | m = k − 1 (0..=15) |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 4 | n, the vector length (> 0) |
//! | 12 | 8·r | the record of [`Candidate::record`] (r = [`Candidate::record_len`]`(m)` f64) |
//! | 12 + 8r | 4 | FNV-1a of every byte before it |
//!
//! Loading checks all of it (magic, version, lengths, checksum) and then the record itself
//! ([`Candidate::from_record`]), so damaged or foreign bytes are refused, never trusted.

use crate::{Candidate, GramError};

const MAGIC: [u8; 4] = *b"GRMC";
const HEADER: usize = 12;

/// FNV-1a, 32 bits: detects damage (a flipped bit, a truncated copy), not tampering.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

impl Candidate {
    /// Version of the byte layout written by [`Candidate::to_bytes`]; [`Candidate::from_bytes`]
    /// reads this version only.
    pub const BYTES_VERSION: u8 = 1;

    /// Length of [`Candidate::to_bytes`]' output for a candidate of `m` vectors: 16 + 8·(4 + 2m +
    /// m(m+1)/2), 104 bytes for k = 3.
    pub const fn bytes_len(m: usize) -> usize {
        HEADER + 8 * Self::record_len(m) + 4
    }

    /// Write the candidate into `out` (exactly [`Candidate::bytes_len`]`(self.len())` bytes).
    /// Errors: `DimensionMismatch` (wrong `out` length), `OutOfRange` (n above `u32::MAX`).
    ///
    /// ```
    /// use gram_nostd::Candidate;
    /// let (m1, m2) = ([1.0f32, 0.5, 0.0], [0.0f32, 1.0, 2.0]);
    /// let c = Candidate::new(&[&m1[..], &m2], 3).unwrap();
    /// let mut bytes = [0u8; Candidate::bytes_len(2)];
    /// c.to_bytes(&mut bytes).unwrap(); // store or flash these
    /// let back = Candidate::from_bytes(&bytes).unwrap();
    /// assert_eq!(back.volume(), c.volume());
    /// bytes[20] ^= 1; // damage is refused, not trusted
    /// assert!(Candidate::from_bytes(&bytes).is_err());
    /// ```
    pub fn to_bytes(&self, out: &mut [u8]) -> Result<(), GramError> {
        let m = self.len();
        let len = Self::bytes_len(m);
        if out.len() != len {
            return Err(GramError::DimensionMismatch {
                expected: len,
                found: out.len(),
            });
        }
        let dim = u32::try_from(self.dim()).map_err(|_| GramError::OutOfRange)?;
        let mut rec = [0.0f64; Self::record_len(crate::MAX_K - 1)];
        let rec = &mut rec[..Self::record_len(m)];
        self.record(rec)?;
        out[..4].copy_from_slice(&MAGIC);
        out[4] = Self::BYTES_VERSION;
        out[5] = m as u8;
        out[6..8].fill(0);
        out[8..12].copy_from_slice(&dim.to_le_bytes());
        for (chunk, v) in out[HEADER..len - 4].chunks_exact_mut(8).zip(rec.iter()) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        let sum = fnv1a(&out[..len - 4]);
        out[len - 4..].copy_from_slice(&sum.to_le_bytes());
        Ok(())
    }

    /// The candidate written by [`Candidate::to_bytes`], bit for bit. Errors: `InvalidParameter`
    /// (not this format: magic, version, reserved bytes; a checksum mismatch; an inconsistent
    /// record), `DimensionMismatch` (a length that does not match m), `NonFinite` (a non-finite
    /// value in the record).
    pub fn from_bytes(bytes: &[u8]) -> Result<Candidate, GramError> {
        if bytes.len() < HEADER + 4 {
            return Err(GramError::DimensionMismatch {
                expected: Self::bytes_len(0),
                found: bytes.len(),
            });
        }
        if bytes[..4] != MAGIC || bytes[4] != Self::BYTES_VERSION || bytes[6..8] != [0, 0] {
            return Err(GramError::InvalidParameter);
        }
        let m = bytes[5] as usize;
        if m >= crate::MAX_K || bytes.len() != Self::bytes_len(m) {
            return Err(GramError::DimensionMismatch {
                expected: Self::bytes_len(m.min(crate::MAX_K - 1)),
                found: bytes.len(),
            });
        }
        let len = bytes.len();
        let sum = u32::from_le_bytes([
            bytes[len - 4],
            bytes[len - 3],
            bytes[len - 2],
            bytes[len - 1],
        ]);
        if sum != fnv1a(&bytes[..len - 4]) {
            return Err(GramError::InvalidParameter);
        }
        let dim = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let mut rec = [0.0f64; Self::record_len(crate::MAX_K - 1)];
        let rec = &mut rec[..Self::record_len(m)];
        for (v, chunk) in rec.iter_mut().zip(bytes[HEADER..len - 4].chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *v = f64::from_le_bytes(b);
        }
        Candidate::from_record(m, dim, rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Arithmetic;

    #[test]
    fn bytes_round_trip_and_refuse_damage() {
        let m1 = [1.0f32, 0.5, -0.25, 0.0, 3.0];
        let m2 = [-0.7f32, 0.2, 1.5, 1.0, -0.4];
        let a = [0.3f32, -1.2, 0.8, 2.0, 0.1];
        for arithmetic in [Arithmetic::Double, Arithmetic::Single] {
            let c = Candidate::new_with(arithmetic, &[&m1[..], &m2], 5).unwrap();
            let mut bytes = [0u8; Candidate::bytes_len(2)];
            assert_eq!(bytes.len(), 104);
            c.to_bytes(&mut bytes).unwrap();
            let back = Candidate::from_bytes(&bytes).unwrap();
            let dots = [
                a.iter()
                    .zip(&m1)
                    .map(|(x, y)| *x as f64 * *y as f64)
                    .sum::<f64>(),
                a.iter()
                    .zip(&m2)
                    .map(|(x, y)| *x as f64 * *y as f64)
                    .sum::<f64>(),
            ];
            let p = |c: &Candidate| c.pair_volume(5.7, &dots, 1e-7, 1e-15);
            assert_eq!(p(&c).volume.to_bits(), p(&back).volume.to_bits());
            assert_eq!(c.gram_rel_err(), back.gram_rel_err());
            assert_eq!((back.len(), back.dim()), (2, 5));
            // Every single-byte change is refused (checksum, or the header checks first).
            for i in 0..bytes.len() {
                let mut bad = bytes;
                bad[i] ^= 0x10;
                assert!(Candidate::from_bytes(&bad).is_err(), "byte {i}");
            }
            assert!(Candidate::from_bytes(&bytes[..bytes.len() - 1]).is_err());
            let mut short = [0u8; 103];
            assert!(c.to_bytes(&mut short).is_err());
        }
    }
}
