//! Pretrained encoders as transformers computes them: the AST feature extractor on real
//! recordings, the AST and SigLIP towers on folders saved by transformers' `save_pretrained`,
//! and the CLIP and SigLIP image processors on real PNG and JPEG files. The references are
//! under testdata/hf, made by scripts/hf_reference.py (its reference.json names the versions).

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use gram_train::model::encoders::{
    self, Encoder, EncoderSpec, HostInput, Kind, audio, fbank, vision, wav,
};
use std::path::{Path, PathBuf};

fn hf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/hf")
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A float32 .npy file's values and shape.
fn npy(p: &Path) -> (Vec<f32>, Vec<u64>) {
    let bytes = std::fs::read(p).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = f.shape().to_vec();
    (f.into_vec::<f32>().unwrap(), shape)
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// The encoder of `kind` loaded from `dir` as `--encoder m=KIND:DIR` loads it.
fn load(kind: Kind, dir: &Path) -> (EncoderSpec, Encoder) {
    let mut spec = EncoderSpec::of(kind);
    spec.path = Some(dir.to_path_buf());
    spec.resolve().unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu).pp("enc.m");
    let enc = Encoder::new(&spec, vb, 0).unwrap();
    encoders::load_folder(&varmap, "enc.m", dir).unwrap();
    (spec, enc)
}

fn pooled(enc: &Encoder, input: &HostInput) -> Vec<f32> {
    enc.forward(input, &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn expected(v: &serde_json::Value) -> Vec<f32> {
    serde_json::from_value::<Vec<Vec<f32>>>(v.clone())
        .unwrap()
        .concat()
}

#[test]
fn resampling_equals_torchaudio() {
    let r = &json(&hf().join("reference.json"))["audio"]["resample_44100_to_16000"];
    let want: Vec<f32> = serde_json::from_value(r["output"].clone()).unwrap();
    let x: Vec<f32> = (0..300)
        .map(|n| {
            let t = n as f64 / 44100.0;
            (2.0 * std::f64::consts::PI * (300.0 + 4000.0 * t) * t).sin() as f32
        })
        .collect();
    let got = wav::resample(&x, 44100, 16000);
    let w = worst(&got, &want);
    let f32_ref: Vec<f32> = serde_json::from_value(r["output_float32"].clone()).unwrap();
    eprintln!(
        "resample 44.1 → 16 kHz against torchaudio: worst {w:.1e} (its float32 run: {:.1e})",
        worst(&got, &f32_ref)
    );
    assert!(w < 1e-6, "{w}");
}

#[test]
fn ast_features_of_real_recordings_equal_the_feature_extractors() {
    let summary = json(&hf().join("reference.json"));
    let cfg = fbank::AstFeatureConfig::default();
    let mut names: Vec<_> = std::fs::read_dir(hf().join("audio"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5);
    for name in names {
        let s = &summary["audio"][&name];
        let samples =
            wav::read_wav(&std::fs::read(hf().join("audio").join(&name)).unwrap()).unwrap();
        assert_eq!(
            samples.len() as u64,
            s["samples_16k"].as_u64().unwrap(),
            "{name}"
        );
        let got = fbank::ast_features(&samples, &cfg);
        assert_eq!(got.len(), 1024 * 128);
        let frames = s["frames"].as_u64().unwrap() as usize;
        let stem = name.trim_end_matches(".wav");
        for path in ["kaldi", "numpy"] {
            let (want, shape) = npy(&hf().join(format!("audio-ref/{stem}.{path}.npy")));
            assert_eq!(shape, [frames as u64, 128]);
            let w = worst(&got[..frames * 128], &want);
            eprintln!("{name}: AST features vs ASTFeatureExtractor ({path} path): worst {w:.1e}");
            assert!(w <= 1e-4, "{name} ({path}): {w}");
        }
        // The padding frames: zeros normalised, as the extractor pads before normalising.
        let pad = s["padding_value"].as_f64().unwrap() as f32;
        assert!(got[frames * 128..].iter().all(|&v| (v - pad).abs() < 1e-6));
    }
}

#[test]
fn clips_longer_than_max_length_are_cut_and_silence_stays_finite() {
    let cfg = fbank::AstFeatureConfig {
        max_length: 50,
        ..fbank::AstFeatureConfig::default()
    };
    let tone: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.3).sin() * 0.5).collect();
    let full = fbank::fbank(&tone, 128);
    assert_eq!(full.len(), 98 * 128);
    let cut = fbank::ast_features(&tone, &cfg);
    assert_eq!(cut.len(), 50 * 128);
    let norm = |v: f32| (v - cfg.mean as f32) / (2.0 * cfg.std as f32);
    assert!((cut[49 * 128 + 7] - norm(full[49 * 128 + 7])).abs() < 1e-6);
    for clip in [vec![0f32; 4000], vec![0.1; 399], Vec::new()] {
        assert!(
            fbank::ast_features(&clip, &cfg)
                .iter()
                .all(|v| v.is_finite())
        );
    }
}

#[test]
fn ast_loads_as_transformers_saves_it_and_matches_its_pooled_output() {
    // ASTForAudioClassification (the `audio_spectrogram_transformer.` prefix, a classifier to
    // ignore) with the MIT AST's input sizes: 128 bins × 1024 frames, overlapping patches.
    let dir = hf().join("ast-tiny");
    let reference = json(&dir.join("reference.json"));
    let (spec, enc) = load(Kind::Ast, &dir);
    let arch = audio::AudioArch::of(&spec.config, &spec.preprocessor).unwrap();
    assert_eq!(arch.input_len(), 1024 * 128);
    let mut pattern = Vec::with_capacity(2 * 1024 * 128);
    for b in 0..2 {
        for t in 0..1024 {
            for f in 0..128 {
                pattern.push((0.013 * (b + 1) as f64 * t as f64 + 0.07 * f as f64).sin() as f32);
            }
        }
    }
    let w = worst(
        &pooled(&enc, &HostInput::Mel(pattern)),
        &expected(&reference["pooled"]),
    );
    eprintln!("AST pooled output vs transformers (fixed input): worst {w:.1e}");
    assert!(w <= 1e-5, "{w}");
    // End to end: the recording through the folder's feature extractor and the tower.
    let samples =
        wav::read_wav(&std::fs::read(hf().join("audio/speech-22050-mono-s16.wav")).unwrap())
            .unwrap();
    let got = pooled(
        &enc,
        &HostInput::Mel(arch.features(&samples, &arch.filters())),
    );
    // Against the same model run in float64: PyTorch's own float32 runs differ from that by
    // ~1.4e-5 on this input (1 214 tokens), so they are reported, and bounded loosely.
    for (run, key, tolerance) in [
        ("float64", "speech_pooled_float64", 1e-5),
        ("float32, numpy features", "speech_pooled_numpy", 5e-5),
        ("float32, torchaudio features", "speech_pooled", 5e-5),
    ] {
        let w = worst(&got, &expected(&reference[key]));
        eprintln!(
            "AST pooled output vs transformers (WAV → features → tower, {run}): worst {w:.1e}"
        );
        assert!(w <= tolerance, "{run}: {w}");
    }
}

/// The fixed input of the vision references: sin(0.37·(b+1)·x + 0.11·y + c), [2, 3, 32, 32].
fn sine_pixels() -> HostInput {
    let mut pixels = Vec::with_capacity(2 * 3 * 32 * 32);
    for b in 0..2 {
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let v = 0.37 * (b + 1) as f64 * x as f64 + 0.11 * y as f64 + c as f64;
                    pixels.push(v.sin() as f32);
                }
            }
        }
    }
    HostInput::Pixels {
        data: pixels,
        frames: 1,
    }
}

#[test]
fn clip_vision_tower_matches_transformers_on_its_own_saved_folder() {
    // testdata/clip-tiny: a random tiny CLIPVisionModel saved by transformers' save_pretrained,
    // with its pooled output (scripts/clip_tiny_reference.py).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/clip-tiny");
    let (_, enc) = load(Kind::Clip, &dir);
    let reference = json(&dir.join("reference.json"));
    let w = worst(
        &pooled(&enc, &sine_pixels()),
        &expected(&reference["pooled"]),
    );
    eprintln!("CLIP vision parity with transformers: worst abs difference {w:.2e}");
    assert!(
        w < 1e-5,
        "CLIP vision tower differs from transformers by {w}"
    );
}

#[test]
fn siglip_loads_as_transformers_saves_it_and_matches_its_pooled_output() {
    let dir = hf().join("siglip-tiny");
    let reference = json(&dir.join("reference.json"));
    let (spec, enc) = load(Kind::Siglip, &dir);
    let w = worst(
        &pooled(&enc, &sine_pixels()),
        &expected(&reference["pooled"]),
    );
    eprintln!("SigLIP pooled output vs transformers (fixed input): worst {w:.1e}");
    assert!(w <= 1e-5, "{w}");
    // End to end through the folder's SiglipImageProcessor (32 × 32, mean = std = 0.5).
    let cfg = vision::VitConfig::from_json(&spec.config, vision::Family::Siglip).unwrap();
    let prep = vision::ImagePrep::of(vision::Family::Siglip, &cfg, &spec.preprocessor).unwrap();
    assert_eq!(
        (prep.shortest_edge, prep.size, prep.mean),
        (None, 32, [0.5; 3])
    );
    let bytes = std::fs::read(hf().join("img/chelsea-300x200.png")).unwrap();
    let px = HostInput::Pixels {
        data: vision::preprocess(&bytes, &prep).unwrap(),
        frames: 1,
    };
    let w = worst(&pooled(&enc, &px), &expected(&reference["image_pooled"]));
    eprintln!("SigLIP pooled output vs transformers (PNG → processor → tower): worst {w:.1e}");
    assert!(w <= 1e-5, "{w}");
}

/// Largest difference in 8-bit levels (the normalised difference × std × 255) and the share
/// of values that differ at all.
fn levels(got: &[f32], want: &[f32], std: [f32; 3]) -> (f32, f64) {
    let per = got.len() / 3;
    let mut max = 0f32;
    let mut differ = 0usize;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let l = (a - b).abs() * std[i / per] * 255.0;
        max = max.max(l);
        differ += usize::from(l > 0.01);
    }
    (max, differ as f64 / got.len() as f64)
}

#[test]
fn image_processors_on_real_files_equal_transformers() {
    let clip_cfg = |n: usize| {
        let mut c = vision::small_config();
        c["image_size"] = n.into();
        vision::VitConfig::from_json(&c, vision::Family::Clip).unwrap()
    };
    let preps = [
        (
            "clip64",
            vision::ImagePrep::of(
                vision::Family::Clip,
                &clip_cfg(64),
                &serde_json::json!({"size": {"shortest_edge": 64}, "crop_size": {"height": 64, "width": 64}}),
            )
            .unwrap(),
        ),
        (
            "siglip64",
            vision::ImagePrep::of(
                vision::Family::Siglip,
                &clip_cfg(64),
                &serde_json::json!({"size": {"height": 64, "width": 64}}),
            )
            .unwrap(),
        ),
        (
            "clip224",
            vision::ImagePrep::of(vision::Family::Clip, &clip_cfg(224), &serde_json::Value::Null)
                .unwrap(),
        ),
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(hf().join("img")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let stem = name.rsplit_once('.').unwrap().0;
        let bytes = std::fs::read(&path).unwrap();
        for (tag, prep) in &preps {
            let reference = hf().join(format!("img-ref/{stem}.{tag}.npy"));
            if !reference.exists() {
                continue;
            }
            let (want, _) = npy(&reference);
            let got = vision::preprocess(&bytes, prep).unwrap();
            let (max, share) = levels(&got, &want, prep.std);
            eprintln!(
                "{name} {tag}: largest difference {max:.3} levels of 255, {:.2}% of values differ",
                share * 100.0
            );
            // Pillow's pixels (libjpeg-turbo's decoder for JPEG) and arithmetic reproduced:
            // f32 rounding only.
            assert!(worst(&got, &want) < 2e-6, "{name} {tag}");
            checked += 1;
        }
    }
    assert_eq!(checked, 13);
}

#[test]
fn truncated_or_corrupt_jpegs_are_errors_not_grey_pixels() {
    let prep = vision::ImagePrep::of(
        vision::Family::Siglip,
        &vision::VitConfig::from_json(&vision::small_config(), vision::Family::Siglip).unwrap(),
        &serde_json::Value::Null,
    )
    .unwrap();
    let good = std::fs::read(hf().join("img/rocket-180x300.jpg")).unwrap();
    assert!(vision::preprocess(&good, &prep).is_ok());
    let mut garbled = good.clone();
    garbled[600..900].fill(0x55);
    for bad in [&good[..good.len() / 2], &garbled[..], b"\xff\xd8\xffnope"] {
        let e = vision::preprocess(bad, &prep).unwrap_err().to_string();
        assert!(e.contains("JPEG"), "{e}");
    }
}

#[test]
fn the_mit_ast_model_id_resolves_from_a_hub_cache_and_loads() {
    // The cache layout huggingface-cli leaves: refs/main → snapshots/HASH/{files}; the tiny AST
    // stands in for the real one under its id.
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp
        .path()
        .join("models--MIT--ast-finetuned-audioset-10-10-0.4593");
    let hash = "a".repeat(40);
    let snap = repo.join("snapshots").join(&hash);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), &hash).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ] {
        std::fs::copy(hf().join("ast-tiny").join(f), snap.join(f)).unwrap();
    }
    let dir = encoders::hub::find_in(tmp.path(), "MIT/ast-finetuned-audioset-10-10-0.4593", None)
        .unwrap();
    assert_eq!(dir, snap);
    let (spec, _) = load(Kind::Ast, &dir);
    assert_eq!(
        spec.preprocessor["feature_extractor_type"],
        "ASTFeatureExtractor"
    );
}

#[test]
fn pillow_resize_is_bit_identical_for_every_filter_and_pass_order() {
    use gram_train::model::encoders::pillow::{self, Filter};
    let r = json(&hf().join("pillow-resize.json"));
    let (w, h) = (
        r["width"].as_u64().unwrap() as usize,
        r["height"].as_u64().unwrap() as usize,
    );
    let src: Vec<u8> = serde_json::from_value(r["source"].clone()).unwrap();
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 24);
    for c in cases {
        let size: [usize; 2] = serde_json::from_value(c["size"].clone()).unwrap();
        let filter = Filter::try_from(c["resample"].as_u64().unwrap() as u8).unwrap();
        let want: Vec<u8> = serde_json::from_value(c["pixels"].clone()).unwrap();
        let got = pillow::resize(&src, w, h, 3, size[0], size[1], filter);
        assert_eq!(got, want, "{size:?} {filter:?}");
    }
}
