//! Making incomplete datasets on purpose: `--missing MOD=FRACTION` for `gram-train synth` and
//! `make-raw`. Which samples lack a modality is drawn from the generator's seed, the split and
//! the modality alone, so the complete samples are the same as without `--missing` and a run
//! is reproducible.

use crate::error::Error;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

/// Parse `MOD=FRACTION` (fraction in [0, 1)) for modality `MOD` of `modalities`, never the
/// anchor (an incomplete sample must keep what it aligns to).
pub fn parse(arg: &str, modalities: &[String], anchor: &str) -> Result<(String, f64), Error> {
    let bad = |why: &str| Error::config(format!("--missing {arg}: {why}"));
    let (m, f) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected MOD=FRACTION"))?;
    let f: f64 = f.parse().map_err(|_| bad("FRACTION is not a number"))?;
    if !(0.0..1.0).contains(&f) {
        return Err(bad("FRACTION must be in [0, 1)"));
    }
    if !modalities.iter().any(|x| x == m) {
        return Err(bad(&format!("'{m}' is not one of {modalities:?}")));
    }
    if m == anchor {
        return Err(bad("the anchor cannot be missing"));
    }
    Ok((m.to_string(), f))
}

/// Which of `n` samples of `split` lack modality number `t`: round(fraction·n) of them, drawn
/// from (`seed`, `split`, `t`).
pub fn rows(seed: u64, split: &str, t: usize, n: usize, fraction: f64) -> Vec<bool> {
    let salt = split.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ salt ^ ((t as u64 + 1) << 56));
    let mut out = vec![false; n];
    let count = ((fraction * n as f64).round() as usize).min(n);
    for i in sample(&mut rng, n, count) {
        out[i] = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_reproducible_and_the_requested_fraction() {
        let a = rows(7, "train", 2, 1000, 0.3);
        assert_eq!(a, rows(7, "train", 2, 1000, 0.3));
        assert_eq!(a.iter().filter(|&&m| m).count(), 300);
        assert_ne!(a, rows(7, "val", 2, 1000, 0.3));
        assert_ne!(a, rows(7, "train", 1, 1000, 0.3));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let ms = ["text", "audio"].map(String::from);
        assert_eq!(
            parse("audio=0.3", &ms, "text").unwrap(),
            ("audio".into(), 0.3)
        );
        for bad in [
            "audio",
            "audio=x",
            "audio=1",
            "audio=-0.1",
            "video=0.1",
            "text=0.2",
        ] {
            let e = parse(bad, &ms, "text").unwrap_err().to_string();
            assert!(e.starts_with(&format!("--missing {bad}: ")), "{e}");
        }
    }
}
