//! Text: a BERT-family encoder ([`super::blocks::Bert`], Hugging Face parameter names) with a
//! `tokenizers` tokenizer, pooled over tokens (mean over the attention mask, as
//! sentence-transformers' MiniLM does, or the \[CLS\] token).

use super::blocks::{Bert, BertConfig};
use crate::error::Error;
use candle_core::{D, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the token states under the attention mask (sentence-transformers).
    #[default]
    Mean,
    /// The first (\[CLS\]) token's state.
    Cls,
}

/// The small randomly initialised configuration used when no pretrained folder is given:
/// 2 layers, hidden 128, over the character-level vocabulary of [`char_tokenizer`].
pub fn small_config() -> serde_json::Value {
    serde_json::json!({
        "vocab_size": char_vocab().len(),
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "max_position_embeddings": 128,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "model_type": "bert"
    })
}

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Specials, then every printable ASCII character on its own and as a `##` continuation.
fn char_vocab() -> Vec<String> {
    let mut v: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    for c in (b'!'..=b'~')
        .map(char::from)
        .filter(|c| !c.is_ascii_uppercase())
    {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    v
}

/// A character-level WordPiece tokenizer (BERT normaliser, lower-casing, BERT
/// pre-tokenizer and \[CLS\]/\[SEP\] template): covers any text, needs no download.
pub fn char_tokenizer() -> std::result::Result<Tokenizer, Error> {
    // Built as tokenizer.json text: the same format (and code path) as a pretrained one's.
    let vocab: serde_json::Map<String, serde_json::Value> = char_vocab()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, serde_json::json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 200, "vocab": vocab}
    });
    json.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| Error::config(format!("character tokenizer: {e}")))
}

/// Token ids, token types and attention mask of a batch, padded to its longest row.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub mask: Vec<u32>,
    pub len: usize,
}

/// Tokenize `texts`, truncating each to `max_len` tokens (special tokens included).
pub fn tokenize(
    tok: &Tokenizer,
    texts: &[&str],
    max_len: usize,
) -> std::result::Result<Tokens, Error> {
    let mut rows = Vec::with_capacity(texts.len());
    for t in texts {
        let enc = tok
            .encode(*t, true)
            .map_err(|e| Error::decode(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.len() > max_len {
            // Keep the closing [SEP]: the model was trained to see one.
            let last = *ids.last().expect("non-empty");
            ids.truncate(max_len);
            ids[max_len - 1] = last;
        }
        rows.push(ids);
    }
    let len = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut mask = Vec::with_capacity(rows.len() * len);
    for r in &rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(0, len - r.len()));
        mask.extend(std::iter::repeat_n(1, r.len()));
        mask.extend(std::iter::repeat_n(0, len - r.len()));
    }
    Ok(Tokens { ids, mask, len })
}

pub struct TextEncoder {
    bert: Bert,
    pooling: Pooling,
    pub hidden: usize,
}

impl TextEncoder {
    /// Parameters under `vb` (HF BERT names: `embeddings.*`, `encoder.layer.*`).
    pub fn new(vb: VarBuilder, config: &serde_json::Value, pooling: Pooling) -> Result<Self> {
        let cfg: BertConfig = serde_json::from_value(config.clone())
            .map_err(|e| candle_core::Error::Msg(format!("BERT config.json: {e}")))?;
        Ok(TextEncoder {
            bert: Bert::new(vb, &cfg)?,
            pooling,
            hidden: cfg.hidden_size,
        })
    }

    /// Pooled states [B, hidden] of a tokenized batch.
    pub fn forward(&self, tokens: &Tokens, dev: &Device) -> Result<Tensor> {
        let b = tokens.ids.len() / tokens.len;
        let ids = Tensor::from_slice(&tokens.ids, (b, tokens.len), dev)?;
        let mask = Tensor::from_slice(&tokens.mask, (b, tokens.len), dev)?;
        let states = self.bert.forward(&ids, &mask)?;
        match self.pooling {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => {
                let m = mask.to_dtype(states.dtype())?.unsqueeze(D::Minus1)?;
                let sum = states.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                sum.broadcast_div(&count)
            }
        }
    }
}
