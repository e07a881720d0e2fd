//! The k best (smallest-volume) candidates of a row, kept while volumes stream past, and the
//! merge of several such lists (column ranges, index shards, hit files of separate machines).
//!
//! A hit is one `u64` key whose ascending order is the order every backend's top-k follows:
//! volume by `f32::total_cmp`, then the smaller candidate index. Merging keys therefore gives
//! exactly the hits one search over all candidates would, whatever the split.

use std::collections::BinaryHeap;

/// (candidate `j`, volume `v`) as a key ordered by (v by `total_cmp`, j).
#[inline]
pub fn key(j: u32, v: f32) -> u64 {
    let b = v.to_bits() as i32;
    // Negative floats flip their magnitude bits so that integer order is total_cmp order;
    // the sign bit is then flipped to move negatives below positives in unsigned order.
    let t = (b ^ (((b >> 31) as u32) >> 1) as i32) as u32 ^ 0x8000_0000;
    (t as u64) << 32 | j as u64
}

/// The (candidate, volume) of a [`key`].
#[inline]
pub fn unkey(key: u64) -> (u32, f32) {
    let t = ((key >> 32) as u32 ^ 0x8000_0000) as i32;
    let b = t ^ (((t >> 31) as u32) >> 1) as i32;
    (key as u32, f32::from_bits(b as u32))
}

/// The `k` smallest keys pushed so far.
pub struct Best {
    k: usize,
    heap: BinaryHeap<u64>,
    /// The largest kept key once `k` are kept (a new key must be below it), else `u64::MAX`.
    bar: u64,
}

impl Best {
    pub fn new(k: usize) -> Best {
        Best {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            bar: u64::MAX,
        }
    }

    /// Offer a key: one comparison when it does not make the list.
    #[inline]
    pub fn push(&mut self, key: u64) {
        if key < self.bar {
            self.heap.push(key);
            if self.heap.len() > self.k {
                self.heap.pop();
            }
            if self.heap.len() == self.k {
                self.bar = *self.heap.peek().expect("k ≥ 1 keys");
            }
        }
    }

    /// The volume of the largest kept key once `k` are kept (a volume above it cannot enter),
    /// else +∞.
    pub fn bar_volume(&self) -> f32 {
        if self.bar == u64::MAX {
            f32::INFINITY
        } else {
            unkey(self.bar).1
        }
    }

    /// The kept keys, ascending.
    pub fn into_sorted(self) -> Vec<u64> {
        self.heap.into_sorted_vec()
    }
}

/// The `k` smallest of all keys in `lists`, ascending.
pub fn merge<L: IntoIterator<Item = u64>>(
    lists: impl IntoIterator<Item = L>,
    k: usize,
) -> Vec<u64> {
    let mut best = Best::new(k);
    for key in lists.into_iter().flatten() {
        best.push(key);
    }
    best.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_total_cmp_then_index() {
        let vals = [
            f32::NEG_INFINITY,
            -3.5,
            -f32::MIN_POSITIVE,
            -0.0,
            0.0,
            1e-45,
            1.0,
            1.0,
            f32::MAX,
            f32::INFINITY,
        ];
        let mut pairs: Vec<(u32, f32)> = vals
            .iter()
            .enumerate()
            .map(|(j, &v)| (9 - j as u32, v))
            .collect();
        pairs.reverse();
        let mut by_key = pairs.clone();
        by_key.sort_by_key(|&(j, v)| key(j, v));
        let mut by_cmp = pairs.clone();
        by_cmp.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let bits = |p: &[(u32, f32)]| p.iter().map(|&(j, v)| (j, v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&by_key), bits(&by_cmp));
        for &(j, v) in &pairs {
            let (j2, v2) = unkey(key(j, v));
            assert_eq!((j2, v2.to_bits()), (j, v.to_bits()));
        }
    }

    #[test]
    fn merge_of_a_split_equals_the_whole() {
        let vals: Vec<f32> = (0..1000u32)
            .map(|j| ((j * 7919) % 97) as f32 * 0.5)
            .collect();
        let all: Vec<u64> = vals
            .iter()
            .enumerate()
            .map(|(j, &v)| key(j as u32, v))
            .collect();
        for k in [1, 5, 97, 1000] {
            let whole = merge([all.clone()], k);
            let parts = merge(all.chunks(37).map(|c| merge([c.to_vec()], k)), k);
            assert_eq!(whole, parts);
            let mut sorted = all.clone();
            sorted.sort_unstable();
            assert_eq!(whole, sorted[..k]);
        }
    }
}
