//! Candidate factors in flat storage: what [`super::Scorer`] needs of each candidate, computed
//! once ([`Factors::compute`]) or read back from a search index ([`Factors::from_records`]).
//!
//! Each candidate is one record of [`Factors::stride`] f64 values: gram-nostd's
//! [`Candidate::record`] followed by (min_t ‖m_t‖, max_t ‖m_t‖), the range the GEMM path's
//! error model is checked against. Flat records are ~100 bytes a candidate at k = 3 where a
//! [`Candidate`] is ~1.1 KiB, so 10^6 candidates take 100 MB, and an index stores them as they
//! are in memory.

use gram_nostd::{Candidate, GramError, MAX_K, candidate_at, dot::dot_f64};
use rayon::prelude::*;
use std::borrow::Cow;

/// The factors of `n` candidates of `m` vectors of length `dim`.
pub struct Factors<'a> {
    records: Cow<'a, [f64]>,
    m: usize,
    n: usize,
    dim: usize,
}

impl Factors<'static> {
    /// Factor candidate j (row j of every `[n, dim]` modality) for every j, in parallel.
    /// Errors as [`Candidate::new`] (`NonFinite`, `TooManyVectors`, …).
    pub fn compute(modalities: &[&[f32]], n: usize, dim: usize) -> Result<Self, GramError> {
        let m = modalities.len();
        if m == 0 || m >= MAX_K || dim == 0 {
            return Err(GramError::EmptyInput);
        }
        let stride = Self::stride(m);
        let mut records = vec![0.0f64; n * stride];
        records
            .par_chunks_mut(stride)
            .enumerate()
            .try_for_each(|(j, rec)| {
                let c = candidate_at(modalities, dim, j)?;
                let (factor, norms) = rec.split_at_mut(stride - 2);
                c.record(factor)?;
                let (lo, hi) = modalities
                    .iter()
                    .fold((f64::INFINITY, 0.0f64), |(lo, hi), t| {
                        let row = &t[j * dim..(j + 1) * dim];
                        let norm = dot_f64(row, 1.0, row, 1.0).sqrt();
                        (lo.min(norm), hi.max(norm))
                    });
                norms.copy_from_slice(&[lo, hi]);
                Ok(())
            })?;
        Ok(Factors {
            records: Cow::Owned(records),
            m,
            n,
            dim,
        })
    }
}

impl<'a> Factors<'a> {
    /// f64 values per candidate for `m` vectors: the gram-nostd record and two norms.
    pub const fn stride(m: usize) -> usize {
        Candidate::record_len(m) + 2
    }

    /// Factors stored earlier (`records` as [`Factors::records`] returned them), borrowed —
    /// e.g. from a memory-mapped index. Every record is checked
    /// ([`Candidate::from_record`]; norms finite, 0 ≤ min ≤ max), so a damaged store is refused
    /// here and scoring never meets one.
    pub fn from_records(
        records: &'a [f64],
        m: usize,
        n: usize,
        dim: usize,
    ) -> Result<Factors<'a>, GramError> {
        if m == 0 || m >= MAX_K || dim == 0 || records.len() != n * Self::stride(m) {
            return Err(GramError::DimensionMismatch {
                expected: n * Self::stride(m.clamp(1, MAX_K - 1)),
                found: records.len(),
            });
        }
        let f = Factors {
            records: Cow::Borrowed(records),
            m,
            n,
            dim,
        };
        (0..n).into_par_iter().try_for_each(|j| {
            f.candidate(j)?;
            let (lo, hi) = f.norm_range(j);
            if !(lo.is_finite() && hi.is_finite()) {
                return Err(GramError::NonFinite);
            }
            if !(0.0 <= lo && lo <= hi) {
                return Err(GramError::InvalidParameter);
            }
            Ok(())
        })?;
        Ok(f)
    }

    /// All records, candidate after candidate ([`Factors::stride`] values each).
    pub fn records(&self) -> &[f64] {
        &self.records
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Vectors per candidate (k − 1).
    pub fn vectors(&self) -> usize {
        self.m
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn record(&self, j: usize) -> &[f64] {
        let s = Self::stride(self.m);
        &self.records[j * s..(j + 1) * s]
    }

    /// The factor of candidate j.
    pub fn candidate(&self, j: usize) -> Result<Candidate, GramError> {
        let rec = self.record(j);
        Candidate::from_record(self.m, self.dim, &rec[..rec.len() - 2])
    }

    /// (min_t ‖m_t‖, max_t ‖m_t‖) of candidate j.
    pub fn norm_range(&self, j: usize) -> (f64, f64) {
        let rec = self.record(j);
        (rec[rec.len() - 2], rec[rec.len() - 1])
    }
}
