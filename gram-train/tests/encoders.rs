//! Encoders: every parameter trains (candle's fused LayerNorm would silently cut gradients),
//! the differentiable blocks equal candle's reference ops, encoder folders round-trip, and the
//! image and audio frontends do what their documentation says.

mod common;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use gram_train::model::encoders::{
    self, Encoder, EncoderSpec, HostInput, Kind, audio, blocks, pillow, vision, wav,
};
use std::path::PathBuf;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/raw")
}

#[test]
fn every_parameter_of_every_encoder_gets_a_gradient() {
    common::gradient_census(&Device::Cpu);
    // The other two kinds: SigLIP's tower and pooling head, the log-mel AST.
    common::gradient_census_of(&Device::Cpu, [Kind::Siglip, Kind::AstMel]);
}

#[test]
fn layer_norm_and_patch_embedding_equal_candles_reference_ops() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 2.0, (3, 5, 16), &dev).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let ours = gram_train::ops::layer_norm::LayerNorm::new(vb.pp("ln"), 16, 1e-5).unwrap();
    encoders::seeded_init(&varmap, "ln", 3).unwrap();
    let w = Tensor::randn(1f32, 0.5, 16, &dev).unwrap();
    let b = Tensor::randn(0f32, 0.5, 16, &dev).unwrap();
    for (name, t) in [("ln.weight", &w), ("ln.bias", &b)] {
        varmap.data().lock().unwrap()[name].set(t).unwrap();
    }
    let reference = candle_nn::LayerNorm::new(w, b, 1e-5).forward(&x).unwrap();
    let worst = common::max_abs_diff(&ours.forward(&x).unwrap(), &reference);
    assert!(worst < 1e-5, "LayerNorm differs by {worst}");

    // The ViT's patches-as-matmul equal a stride-p convolution with the same weight.
    let vit_json = vision::small_config();
    let cfg = vision::VitConfig::from_json(&vit_json, vision::Family::Clip).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let vit = blocks::Vit::new(vb.pp("v"), &cfg.shape(vision::Family::Clip).unwrap()).unwrap();
    encoders::seeded_init(&varmap, "v", 1).unwrap();
    let img = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &dev).unwrap();
    let pooled = vit.forward(&img).unwrap();
    assert_eq!(pooled.dims(), [2, 128]);
    let weight = varmap.data().lock().unwrap()["v.embeddings.patch_embedding.weight"]
        .as_tensor()
        .clone();
    let conv = img
        .conv2d(&weight, 0, 8, 1, 1)
        .unwrap()
        .flatten_from(2)
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let p = 8;
    let patches = img
        .reshape((2, 3, 4, p, 4, p))
        .unwrap()
        .permute((0, 2, 4, 1, 3, 5))
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((2, 16, 3 * p * p))
        .unwrap();
    let mm = patches
        .broadcast_matmul(&weight.reshape((128, 3 * p * p)).unwrap().t().unwrap())
        .unwrap();
    let worst = common::max_abs_diff(&conv, &mm);
    assert!(
        worst < 1e-4,
        "patch embedding differs from conv2d by {worst}"
    );
}

#[test]
fn encoder_folders_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let pixels = HostInput::Pixels {
        data: (0..2 * 3 * 32 * 32)
            .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
            .collect(),
        frames: 1,
    };
    // Both small audio configurations take 64 × 128 values per clip.
    let mel = HostInput::Mel(
        (0..2 * 64 * 128)
            .map(|i| ((i % 13) as f32) / 13.0)
            .collect(),
    );
    let inputs = [
        (Kind::Bert, None),
        (Kind::Clip, Some(pixels.clone())),
        (Kind::Siglip, Some(pixels)),
        (Kind::Ast, Some(mel.clone())),
        (Kind::AstMel, Some(mel)),
    ];
    for (kind, input) in inputs {
        let dir = tmp.path().join(format!("{kind:?}"));
        encoders::write_small(&EncoderSpec::of(kind), 5, &dir).unwrap();
        let mut spec = EncoderSpec::of(kind);
        spec.path = Some(dir.clone());
        spec.resolve().unwrap();
        let build = |seed: Option<u64>| {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev).pp("enc.m");
            let enc = Encoder::new(&spec, vb, 0).unwrap();
            match seed {
                Some(s) => encoders::seeded_init(&varmap, "enc.m", s).unwrap(),
                None => encoders::load_folder(&varmap, "enc.m", &dir).unwrap(),
            }
            enc
        };
        let (loaded, same_seed, other_seed) = (build(None), build(Some(5)), build(Some(6)));
        let input = input.unwrap_or_else(|| {
            let tok = encoders::load_tokenizer(Some(&dir)).unwrap();
            HostInput::Tokens(
                encoders::text::tokenize(&tok, &["a red circle", "a blue square moving up"], 64)
                    .unwrap(),
            )
        });
        let out = |e: &Encoder| e.forward(&input, &dev).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            out(&loaded),
            out(&same_seed),
            "{kind:?}: reloaded folder differs"
        );
        assert_ne!(
            out(&loaded),
            out(&other_seed),
            "{kind:?}: seed has no effect"
        );
    }
}

#[test]
fn a_tone_lands_in_the_mel_band_of_its_frequency() {
    let filters = audio::mel_filters(64);
    let bins = audio::N_FFT / 2 + 1;
    // Every filter has area-normalised, non-negative weights and a peak.
    for m in 0..64 {
        let row = &filters[m * bins..(m + 1) * bins];
        assert!(
            row.iter().all(|&w| w >= 0.0) && row.iter().any(|&w| w > 0.0),
            "filter {m}"
        );
    }
    for freq in [300.0f32, 1000.0, 3000.0] {
        let samples: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / 16000.0).sin())
            .collect();
        let mel = audio::log_mel(&samples, 64, 100, &filters);
        let frame = 50;
        let loudest = (0..64)
            .max_by(|&a, &b| mel[a * 100 + frame].total_cmp(&mel[b * 100 + frame]))
            .unwrap();
        // The filter with the largest weight at the tone's FFT bin.
        let bin = (freq as usize * audio::N_FFT) / 16000;
        let expected = (0..64)
            .max_by(|&a, &b| filters[a * bins + bin].total_cmp(&filters[b * bins + bin]))
            .unwrap();
        assert!(
            loudest.abs_diff(expected) <= 1,
            "{freq} Hz: band {loudest}, expected {expected}"
        );
    }
    // Silence and too-short clips stay finite (padding maps to the floor).
    for clip in [vec![0f32; 16000], vec![0.5f32; 10], Vec::new()] {
        let mel = audio::log_mel(&clip, 64, 100, &filters);
        assert!(mel.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn wav_reading_resamples_and_rejects_garbage() {
    let committed = std::fs::read(testdata().join("audio/0.wav")).unwrap();
    let s = wav::read_wav(&committed).unwrap();
    assert_eq!(s.len(), 8000, "0.5 s at 8 kHz resampled to 16 kHz");
    assert!(s.iter().all(|x| x.abs() <= 1.0));
    let e = wav::read_wav(b"RIFF....WAVEnope").unwrap_err();
    assert!(
        matches!(&e, gram_train::error::Error::Decode(m) if m.starts_with("WAV:")),
        "{e}"
    );
    // A 440 Hz tone keeps its shape across rates (away from the edges, where the sinc sees
    // zeros); equal rates are the identity; lengths are ⌈len·to/from⌉.
    let tone = |rate: f64, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate).sin() as f32)
            .collect()
    };
    for from in [8000u32, 22050, 44100, 48000] {
        let x = tone(from as f64, from as usize / 10);
        let y = wav::resample(&x, from, 16000);
        assert_eq!(y.len(), 1600, "{from} Hz");
        let want = tone(16000.0, 1600);
        let worst = y[100..1500]
            .iter()
            .zip(&want[100..1500])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-3, "{from} Hz: worst {worst}");
    }
    assert_eq!(wav::resample(&[0.25, -0.5], 16000, 16000), vec![0.25, -0.5]);
}

#[test]
fn clip_preprocessing_normalises_and_centre_crops() {
    let mut png = Vec::new();
    let img = image::RgbImage::from_fn(48, 32, |x, _| {
        if !(8..40).contains(&x) {
            image::Rgb([0, 0, 0])
        } else {
            image::Rgb([255, 128, 0])
        }
    });
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let prep = vision::ImagePrep {
        shortest_edge: Some(16),
        size: 16,
        filter: pillow::Filter::Bicubic,
        rescale: 1.0 / 255.0,
        mean: vision::CLIP_MEAN,
        std: vision::CLIP_STD,
    };
    let px = vision::preprocess(&png, &prep).unwrap();
    assert_eq!(px.len(), 3 * 16 * 16);
    // Shorter side 32 → 16: 24×16, centre crop keeps the coloured middle (columns 4..20).
    let centre = |c: usize| px[(c * 16 + 8) * 16 + 8];
    let want = |v: f32, c: usize| (v / 255.0 - vision::CLIP_MEAN[c]) / vision::CLIP_STD[c];
    for (c, v) in [255.0, 128.0, 0.0].into_iter().enumerate() {
        assert!(
            (centre(c) - want(v, c)).abs() < 0.02,
            "channel {c}: {}",
            centre(c)
        );
    }
    assert!(
        vision::preprocess(b"\x89PNG garbage", &prep)
            .unwrap_err()
            .to_string()
            .contains("decode")
    );
    assert_eq!(vision::sample_frames(4, 2), vec![1, 3]);
    assert_eq!(vision::sample_frames(1, 3), vec![0, 0, 0]);
}

#[test]
fn fused_layer_norm_matches_the_tensor_op_version_forward_and_backward() {
    common::fused_layer_norm_parity(&Device::Cpu);
}

#[test]
fn fused_softmax_matches_candles_composed_softmax_forward_and_backward() {
    common::fused_softmax_parity(&Device::Cpu);
}
