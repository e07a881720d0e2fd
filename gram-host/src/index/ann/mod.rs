//! Approximate search over an index (`gram index build --ann`, `gram search --approx`), with a
//! per-query certificate of exactness.
//!
//! The math: for an anchor a and a candidate whose modality vectors M span a space with
//! orthonormal basis u₁ … u_m, and w = vol(M)² ([`gram_nostd::span_basis`]),
//!
//! ```text
//! vol(a, M)² = w · (‖a‖² − Σ_t (a·u_t)²)
//! ```
//!
//! so a candidate ranks high when some (a·u_t)² is large or when w is small. Each shard keeps:
//! - the **basis vectors in cells**: a two-level sign-invariant k-means ([`kmeans`]) over every
//!   candidate's u_t (≈ [`LIST_TARGET`] per cell), and the cells' inverted lists of candidates;
//! - the basis chosen **principal**: the singular vectors of the candidate's normalised vectors
//!   (for k = 3, u ∝ m̂₁ + m̂₂ and m̂₁ − m̂₂), so that an anchor aligned with the candidate (as
//!   training makes it) lies close to one u_t and is found by probing the cells nearest ±a;
//! - **int8 codes** of every u_t (scale and an upper bound on the coding error), stored in list
//!   order, so that a probe estimates scores from a sequential scan of D bytes an entry without
//!   touching the f32 vectors;
//! - **w**, and the candidates **sorted by w** (those rank high for every anchor: a list of
//!   them is part of any candidate generator).
//!
//! A search ([`search`]) probes the cells whose centroids are closest to ±a, estimates the
//! score of every candidate listed there from the codes of its vectors found there, and scores
//! exactly, with the CPU backend's kernel (the volumes of the exact search, bit for bit), the
//! best `rerank` estimates and the `low_w` smallest-w candidates. What it did not score
//! exactly, it bounds from below, through a bound on each (a·u_t)²:
//! - u_t seen in a probed cell: |a·u_t| ≤ |a·û_t| + ‖a‖·e_t, with û_t its code and e_t the
//!   code's error bound (plus the dot's rounding);
//! - u_t in a cell not probed: a cell whose centroid f makes angle α with a, holding members
//!   within angle φ of ±f (φ stored per cell), bounds |a·u| ≤ ‖a‖·cos(max(0, α − φ)); and a
//!   candidate never seen has w at least the w of the first candidate after the `low_w` list.
//!
//! The query is **certified exact** when that lower bound exceeds the k-th volume found, with
//! margin for the exact kernel's accuracy contract ([`certified`]): no candidate left out can
//! then enter the top-k. Bounds of disjoint shards (or indexes, searched on other machines)
//! combine by their minimum, so a merged result is certified on the same rule.

mod build;
mod file;
pub mod kmeans;
mod search;

pub use build::build_shard;
pub use file::{AnnFile, write_ann};
pub use search::{ApproxHits, ApproxOptions, ApproxReport, open, search};

use crate::cpu::topk;

/// Basis vectors per cell the build aims at: a probe of one cell estimates ~this many scores.
pub const LIST_TARGET: usize = 256;

/// A shard's approximate-search data as built ([`build_shard`]); [`AnnView`] is the same
/// borrowed, as a search reads it (from here or from a mapped file).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnnData {
    pub n: usize,
    pub m: usize,
    pub dim: usize,
    pub coarse: Vec<f32>,
    pub coarse_gamma: Vec<f32>,
    pub fine: Vec<f32>,
    pub fine_gamma: Vec<f32>,
    pub fine_offsets: Vec<u32>,
    pub list_offsets: Vec<u32>,
    pub list_ids: Vec<u32>,
    pub list_codes: Vec<i8>,
    pub list_scale: Vec<f32>,
    pub list_err: Vec<f32>,
    pub list_w: Vec<f64>,
    pub w: Vec<f64>,
    pub by_w: Vec<u32>,
}

impl AnnData {
    pub fn view(&self) -> AnnView<'_> {
        AnnView {
            n: self.n,
            m: self.m,
            dim: self.dim,
            coarse: &self.coarse,
            coarse_gamma: &self.coarse_gamma,
            fine: &self.fine,
            fine_gamma: &self.fine_gamma,
            fine_offsets: &self.fine_offsets,
            list_offsets: &self.list_offsets,
            list_ids: &self.list_ids,
            list_codes: &self.list_codes,
            list_scale: &self.list_scale,
            list_err: &self.list_err,
            list_w: &self.list_w,
            w: &self.w,
            by_w: &self.by_w,
        }
    }
}

/// What a search reads of a shard's approximate-search data.
#[derive(Clone, Copy, Debug)]
pub struct AnnView<'a> {
    /// Candidates, vectors per candidate (k − 1) and their length.
    pub n: usize,
    pub m: usize,
    pub dim: usize,
    /// Coarse unit centroids [C1, dim] and, per coarse cell, cos of the widest angle between
    /// a member (signed to align) and its centroid, less the dots' rounding (> 1: no members).
    pub coarse: &'a [f32],
    pub coarse_gamma: &'a [f32],
    /// Fine unit centroids [C, dim] (those of coarse cell i at rows
    /// `fine_offsets[i]..fine_offsets[i + 1]`), and their cos as for the coarse cells.
    pub fine: &'a [f32],
    pub fine_gamma: &'a [f32],
    pub fine_offsets: &'a [u32],
    /// The entries of fine cell c are `list_offsets[c]..list_offsets[c + 1]`; entry e is basis
    /// vector u of candidate `list_ids[e]`, stored where a probe reads it in sequence: its int8
    /// code `list_codes[e·dim..]`, scale and error bound (‖u − scale·code‖ ≤ err), and the
    /// candidate's w.
    pub list_offsets: &'a [u32],
    pub list_ids: &'a [u32],
    pub list_codes: &'a [i8],
    pub list_scale: &'a [f32],
    pub list_err: &'a [f32],
    pub list_w: &'a [f64],
    /// w = vol(M)² \[n\], and the candidates in ascending w (ties by index).
    pub w: &'a [f64],
    pub by_w: &'a [u32],
}

impl AnnView<'_> {
    /// Checks the invariants the search relies on (sizes, offsets, ids in range, finite
    /// values), so that a damaged file is refused instead of searched.
    pub fn check(&self) -> Result<(), String> {
        let (n, d, e) = (self.n, self.dim, self.list_ids.len());
        let c1 = self.coarse_gamma.len();
        let cells = self.fine_gamma.len();
        let sizes = [
            ("coarse", self.coarse.len(), c1 * d),
            ("fine", self.fine.len(), cells * d),
            ("fine_offsets", self.fine_offsets.len(), c1 + 1),
            ("list_offsets", self.list_offsets.len(), cells + 1),
            ("list_codes", self.list_codes.len(), e * d),
            ("list_scale", self.list_scale.len(), e),
            ("list_err", self.list_err.len(), e),
            ("list_w", self.list_w.len(), e),
            ("w", self.w.len(), n),
            ("by_w", self.by_w.len(), n),
        ];
        if e > n * self.m {
            return Err(format!(
                "{e} list entries for {n} candidates of {} vectors",
                self.m
            ));
        }
        for (name, got, want) in sizes {
            if got != want {
                return Err(format!("`{name}` holds {got} values, expected {want}"));
            }
        }
        let monotone = |o: &[u32], end: usize| {
            o.first() == Some(&0)
                && o.windows(2).all(|w| w[0] <= w[1])
                && o.last() == Some(&(end as u32))
        };
        if !monotone(self.fine_offsets, cells) || !monotone(self.list_offsets, self.list_ids.len())
        {
            return Err("cell offsets out of order".into());
        }
        if self
            .list_ids
            .iter()
            .chain(self.by_w)
            .any(|&j| j as usize >= n)
        {
            return Err("a candidate id beyond the shard".into());
        }
        // The certificate takes the w after the low-w list as the least w of the rest.
        if self
            .by_w
            .windows(2)
            .any(|p| self.w[p[0] as usize] > self.w[p[1] as usize])
        {
            return Err("`by_w` is not in ascending order of w".into());
        }
        let finite = |x: &[f32]| x.iter().all(|v| v.is_finite());
        let ok = finite(self.coarse) && finite(self.fine) && finite(self.list_scale);
        let ws = self.w.iter().chain(self.list_w);
        if !(ok && finite(self.list_err) && ws.into_iter().all(|w| w.is_finite() && *w >= 0.0)) {
            return Err("a non-finite or negative value".into());
        }
        Ok(())
    }
}

/// Whether a top-k list is certified exact: `k` hits and a lower bound on the squared volume
/// of every candidate not scored exactly that exceeds the k-th volume² by the margin of the
/// exact kernel's accuracy contract (relative 1e-5 on each volume; 1e-4 on squares covers it),
/// so no such candidate's volume can reach the k-th, nor tie it.
pub fn certified(keys: &[u64], k: usize, bound_sq: f64) -> bool {
    if keys.len() < k {
        return false;
    }
    let kth = topk::unkey(keys[k - 1]).1 as f64;
    bound_sq > kth * kth * (1.0 + 1e-4)
}
