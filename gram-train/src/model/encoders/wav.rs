//! WAV files to the 16 kHz mono samples the audio front ends take: channels averaged,
//! integer samples scaled by 2^(bits−1) (torchaudio's `load`), other rates resampled with
//! torchaudio's `functional.resample` (windowed sinc).
//!
//! Why the resampler by hand: the pretrained audio encoders were trained on features of
//! audio resampled this way (Hugging Face's audio recipes call `torchaudio.functional.resample`),
//! and the features must match theirs to 1e-4; a different good resampler (rubato, soxr)
//! differs in its stop band by more than that. This is torchaudio's kernel, computed in f64.

use crate::error::Error;

/// The rate every front end works at.
pub const SAMPLE_RATE: u32 = 16_000;
/// Zero crossings of the sinc on each side (torchaudio's `lowpass_filter_width`).
const LOWPASS_WIDTH: f64 = 6.0;
/// Cut-off as a share of the lower Nyquist frequency (torchaudio's `rolloff`).
const ROLLOFF: f64 = 0.99;

/// Decode a WAV file to mono f32 samples at [`SAMPLE_RATE`].
pub fn read_wav(bytes: &[u8]) -> Result<Vec<f32>, Error> {
    let mut r = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::decode(format!("WAV: {e}")))?;
    let spec = r.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(Error::decode("WAV: no channels or zero sample rate"));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| Error::decode(format!("WAV: {e}")))?,
        hound::SampleFormat::Int => {
            let full = (1i64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 / full))
                .collect::<Result<_, _>>()
                .map_err(|e| Error::decode(format!("WAV: {e}")))?
        }
    };
    let ch = spec.channels as usize;
    let mono: Vec<f32> = interleaved
        .chunks_exact(ch)
        .map(|c| c.iter().sum::<f32>() / ch as f32)
        .collect();
    if mono.iter().any(|x| !x.is_finite()) {
        return Err(Error::decode("WAV: non-finite samples"));
    }
    Ok(resample(&mono, spec.sample_rate, SAMPLE_RATE))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// `x` at rate `from` resampled to rate `to`: torchaudio's `functional.resample` with its
/// defaults (Hann-windowed sinc, 6 zero crossings, roll-off 0.99), ⌈len·to/from⌉ samples.
/// Equal to torchaudio's output within f32 rounding (it computes the kernel in f32).
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || x.is_empty() || from == 0 || to == 0 {
        return x.to_vec();
    }
    let g = gcd(from as u64, to as u64);
    let (orig, new) = ((from as u64 / g) as usize, (to as u64 / g) as usize);
    let base = orig.min(new) as f64 * ROLLOFF;
    let width = (LOWPASS_WIDTH * orig as f64 / base).ceil() as usize;
    let taps = 2 * width + orig;
    // kernels[j][k]: output phase j's weight on input k − width of its block.
    let kernels: Vec<Vec<f64>> = (0..new)
        .map(|j| {
            (0..taps)
                .map(|k| {
                    let idx = (k as f64 - width as f64) / orig as f64;
                    let t = ((-(j as f64) / new as f64 + idx) * base)
                        .clamp(-LOWPASS_WIDTH, LOWPASS_WIDTH);
                    let window = (t * std::f64::consts::PI / LOWPASS_WIDTH / 2.0)
                        .cos()
                        .powi(2);
                    let t = t * std::f64::consts::PI;
                    let sinc = if t == 0.0 { 1.0 } else { t.sin() / t };
                    sinc * window * base / orig as f64
                })
                .collect()
        })
        .collect();
    let target = (new as u64 * x.len() as u64).div_ceil(orig as u64) as usize;
    // The input padded by `width` zeros before and `width + orig` after, read without copying.
    let at = |i: usize| -> f64 {
        i.checked_sub(width)
            .and_then(|i| x.get(i))
            .map_or(0.0, |&v| v as f64)
    };
    (0..target)
        .map(|n| {
            let (block, phase) = (n / new, n % new);
            let start = block * orig;
            kernels[phase]
                .iter()
                .enumerate()
                .map(|(k, w)| w * at(start + k))
                .sum::<f64>() as f32
        })
        .collect()
}
