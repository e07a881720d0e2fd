//! A tiny raw multimodal dataset generator (`gram-train make-raw`): each sample is a coloured
//! shape (a 32×32 PNG `image`), the same shape moving for 4 frames (`video_frames`), a tone
//! with a pitch and rhythm (8 kHz 8-bit WAV `audio`, resampled by the loader) and a caption
//! naming all of them (`text`). The caption is the anchor; only its joint content identifies a
//! sample, so GRAM's joint alignment has something to learn. Deterministic in `seed`.

use crate::data::missing;
use crate::data::raw::field_of;
use crate::error::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The modalities of the generated dataset (text is the anchor).
const MODALITIES: [&str; 3] = ["text", "video", "audio"];
const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 40, 40]),
    ("green", [40, 200, 60]),
    ("blue", [50, 80, 230]),
    ("yellow", [230, 220, 40]),
    ("purple", [150, 50, 200]),
    ("orange", [240, 140, 30]),
];
const MOTIONS: [(&str, (i32, i32)); 4] = [
    ("moving right", (3, 0)),
    ("moving left", (-3, 0)),
    ("moving down", (0, 3)),
    ("moving up", (0, -3)),
];
const PITCHES: [(&str, f32); 4] = [
    ("low", 220.0),
    ("middle", 440.0),
    ("high", 880.0),
    ("very high", 1760.0),
];
const RHYTHMS: [&str; 2] = ["steady", "pulsing"];

pub const SIZE: u32 = 32;
pub const FRAMES: usize = 4;
pub const WAV_RATE: u32 = 8000;

fn inside(shape: usize, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        0 => dx * dx + dy * dy <= r * r,
        1 => dx.abs() <= r * 0.8 && dy.abs() <= r * 0.8,
        2 => dy <= r * 0.7 && dy >= -r && dx.abs() <= (dy + r) * 0.6,
        _ => (dx.abs() <= r * 0.3 && dy.abs() <= r) || (dy.abs() <= r * 0.3 && dx.abs() <= r),
    }
}

fn render(shape: usize, colour: [u8; 3], cx: f32, cy: f32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut png = Vec::new();
    let mut img = image::RgbImage::new(SIZE, SIZE);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        let noise = rng.random_range(0..24u8);
        *p = if inside(shape, dx, dy, 7.0) {
            image::Rgb(colour.map(|c| c.saturating_sub(noise)))
        } else {
            image::Rgb([30 + noise, 30 + noise, 36 + noise])
        };
    }
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("PNG to memory");
    png
}

fn tone(freq: f32, pulsing: bool, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = WAV_RATE as usize / 2;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: WAV_RATE,
        bits_per_sample: 8,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).expect("WAV header");
    for i in 0..n {
        let t = i as f32 / WAV_RATE as f32;
        let gate = if pulsing && (t * 8.0) as usize % 2 == 1 {
            0.1
        } else {
            1.0
        };
        let s = 0.6 * gate * (2.0 * std::f32::consts::PI * freq * t).sin()
            + 0.05 * rng.random_range(-1.0f32..1.0);
        w.write_sample((s * 127.0) as i8).expect("sample");
    }
    w.finalize().expect("WAV");
    out.into_inner()
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Write `dataset.json` and `train/val/test.jsonl` with their files under `out`. `missing`:
/// (modality, fraction) pairs — that fraction of each split's samples omits the modality's field
/// (its files are still written, so the other samples and files are the same as without).
pub fn generate(
    out: &Path,
    sizes: [usize; 3],
    seed: u64,
    missing: &[(String, f64)],
) -> Result<(), Error> {
    for d in ["img", "video", "audio"] {
        std::fs::create_dir_all(out.join(d)).map_err(|e| Error::io(out, e))?;
    }
    let modalities = MODALITIES.map(String::from);
    for (m, f) in missing {
        missing::parse(&format!("{m}={f}"), &modalities, "text")?;
    }
    let info = if missing.is_empty() {
        r#"{"modalities": ["text", "video", "audio"], "anchor": "text"}"#.to_string()
    } else {
        let names: Vec<&str> = missing.iter().map(|(m, _)| m.as_str()).collect();
        serde_json::json!({"modalities": MODALITIES, "anchor": "text", "missing": names})
            .to_string()
    };
    write(&out.join("dataset.json"), info.as_bytes())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut id = 0usize;
    for (split, n) in ["train", "val", "test"].iter().zip(sizes) {
        let mut lines = String::new();
        let lacks: Vec<(&str, Vec<bool>)> = missing
            .iter()
            .map(|(m, f)| {
                let t = MODALITIES.iter().position(|x| x == m).expect("checked");
                (field_of(m), missing::rows(seed, split, t, n, *f))
            })
            .collect();
        for i in 0..n {
            let shape = rng.random_range(0..SHAPES.len());
            let (cname, colour) = COLOURS[rng.random_range(0..COLOURS.len())];
            let (mname, (vx, vy)) = MOTIONS[rng.random_range(0..MOTIONS.len())];
            let (pname, freq) = PITCHES[rng.random_range(0..PITCHES.len())];
            let rhythm = rng.random_range(0..RHYTHMS.len());
            let (x0, y0) = (
                16.0 - 1.5 * vx as f32 + rng.random_range(-2.0..2.0),
                16.0 - 1.5 * vy as f32 + rng.random_range(-2.0..2.0),
            );
            let img = format!("img/{id}.png");
            write(
                &out.join(&img),
                &render(shape, colour, 16.0, 16.0, &mut rng),
            )?;
            let mut frames = Vec::new();
            for f in 0..FRAMES {
                let p = format!("video/{id}_{f}.png");
                let (cx, cy) = (x0 + (vx * f as i32) as f32, y0 + (vy * f as i32) as f32);
                write(&out.join(&p), &render(shape, colour, cx, cy, &mut rng))?;
                frames.push(p);
            }
            let wav = format!("audio/{id}.wav");
            write(&out.join(&wav), &tone(freq, rhythm == 1, &mut rng))?;
            let caption = format!(
                "a {cname} {} {mname} with a {} {pname} tone",
                SHAPES[shape], RHYTHMS[rhythm]
            );
            let mut line = serde_json::json!({
                "text": caption, "image": img, "video_frames": frames, "audio": wav
            });
            for (field, rows) in &lacks {
                if rows[i] {
                    line.as_object_mut().expect("object").remove(*field);
                }
            }
            lines.push_str(&line.to_string());
            lines.push('\n');
            id += 1;
        }
        write(&out.join(format!("{split}.jsonl")), lines.as_bytes())?;
    }
    Ok(())
}
