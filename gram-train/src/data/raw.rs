//! Raw multimodal datasets: a directory with `dataset.json` (`modalities`, `anchor`, as for
//! feature datasets) and a JSONL manifest per split, `<split>.jsonl`, one object per sample:
//!
//! ```json
//! {"text": "a red circle ...", "image": "img/0.png", "video_frames": ["v/0_0.png", "v/0_1.png"], "audio": "a/0.wav"}
//! ```
//!
//! Modality `video` reads the field `video_frames` (a list of image paths, or one path); every
//! other modality reads the field of its own name. Paths are relative to the manifest's
//! directory. Samples are decoded on rayon threads; a bad sample (missing field or file,
//! undecodable image or WAV) fails the batch naming the manifest line, or — with
//! `skip_bad_samples` — is dropped from its batch, remembered and counted.

use crate::error::Error;
use crate::model::encoders::{EncoderSpec, HostInput, Kind, audio, text, vision};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokenizers::Tokenizer;

/// One manifest line: its 1-based line number and object.
struct Line {
    number: usize,
    fields: serde_json::Map<String, serde_json::Value>,
}

/// How one modality's field becomes model input.
#[derive(Clone)]
pub enum Prep {
    Features,
    Text {
        tokenizer: Box<Tokenizer>,
        max_len: usize,
    },
    Vision {
        size: usize,
        frames: usize,
    },
    Audio {
        n_mels: usize,
        frames: usize,
        filters: Vec<f32>,
    },
}

impl Prep {
    /// The preparation an encoder spec (resolved) needs; text takes its tokenizer.
    pub fn for_spec(spec: &EncoderSpec, tokenizer: Option<&Tokenizer>) -> Result<Prep, Error> {
        Ok(match spec.kind {
            Kind::Features => Prep::Features,
            Kind::Bert => Prep::Text {
                tokenizer: Box::new(
                    tokenizer
                        .cloned()
                        .ok_or_else(|| Error::config("text encoder without tokenizer"))?,
                ),
                max_len: spec.max_len.max(2),
            },
            Kind::Clip => Prep::Vision {
                size: vision::VitConfig::from_json(&spec.config)?.image_size,
                frames: spec.frames.max(1),
            },
            Kind::Ast => {
                let c = audio::AstConfig::from_json(&spec.config)?;
                Prep::Audio {
                    filters: audio::mel_filters(c.n_mels),
                    n_mels: c.n_mels,
                    frames: c.frames,
                }
            }
        })
    }
}

/// Manifest field a modality reads.
pub fn field_of(modality: &str) -> &str {
    if modality == "video" {
        "video_frames"
    } else {
        modality
    }
}

/// One decoded modality of one sample.
enum Decoded {
    Text(String),
    Floats(Vec<f32>),
}

pub struct RawSplit {
    pub manifest: PathBuf,
    base: PathBuf,
    lines: Vec<Line>,
    pub modalities: Vec<String>,
    preps: Vec<Prep>,
    pub skip_bad: bool,
    bad: Mutex<BTreeSet<usize>>,
}

impl RawSplit {
    /// Read `<dir>/<split>.jsonl`. Malformed JSON fails here, naming the line.
    pub fn open(
        dir: &Path,
        split: &str,
        modalities: &[String],
        preps: Vec<Prep>,
        skip_bad: bool,
    ) -> Result<RawSplit, Error> {
        let manifest = manifest_path(dir, split);
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| Error::data(&manifest, format!("cannot read: {e}")))?;
        let mut lines = Vec::new();
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(l) {
                Ok(serde_json::Value::Object(fields)) => lines.push(Line {
                    number: i + 1,
                    fields,
                }),
                Ok(_) => {
                    return Err(Error::data_row(&manifest, i + 1, "not a JSON object"));
                }
                Err(e) => return Err(Error::data_row(&manifest, i + 1, format!("{e}"))),
            }
        }
        if lines.is_empty() {
            return Err(Error::data(&manifest, "no samples"));
        }
        Ok(RawSplit {
            base: manifest.parent().unwrap_or(Path::new(".")).to_path_buf(),
            manifest,
            lines,
            modalities: modalities.to_vec(),
            preps,
            skip_bad,
            bad: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Distinct samples skipped so far.
    pub fn skipped(&self) -> usize {
        self.bad.lock().expect("bad set").len()
    }

    fn path(&self, v: &serde_json::Value) -> Result<PathBuf, Error> {
        match v.as_str() {
            Some(s) if !s.is_empty() => Ok(self.base.join(s)),
            _ => Err(Error::decode(format!("expected a file path, found {v}"))),
        }
    }

    fn read(&self, p: &Path) -> Result<Vec<u8>, Error> {
        std::fs::read(p).map_err(|e| Error::io(p, e))
    }

    fn decode_one(&self, line: &Line, modality: &str, prep: &Prep) -> Result<Decoded, Error> {
        let field = field_of(modality);
        let v = line
            .fields
            .get(field)
            .ok_or_else(|| Error::decode(format!("no field \"{field}\"")))?;
        match prep {
            Prep::Features => {
                let row: Vec<f32> = serde_json::from_value(v.clone())
                    .map_err(|e| Error::decode(format!("\"{field}\": {e}")))?;
                if row.iter().any(|x| !x.is_finite()) {
                    return Err(Error::decode(format!("\"{field}\": non-finite value")));
                }
                Ok(Decoded::Floats(row))
            }
            Prep::Text { .. } => v
                .as_str()
                .map(|s| Decoded::Text(s.to_string()))
                .ok_or_else(|| Error::decode(format!("\"{field}\" is not a string"))),
            Prep::Vision { size, frames } => {
                let paths: Vec<&serde_json::Value> = match v {
                    serde_json::Value::Array(a) if !a.is_empty() => a.iter().collect(),
                    serde_json::Value::Array(_) => {
                        return Err(Error::decode(format!("\"{field}\" is empty")));
                    }
                    one => vec![one],
                };
                let mut out = Vec::with_capacity(frames * 3 * size * size);
                for i in vision::sample_frames(paths.len(), *frames) {
                    let p = self.path(paths[i])?;
                    let px = vision::preprocess(&self.read(&p)?, *size)
                        .map_err(|e| Error::data(&p, e))?;
                    out.extend(px);
                }
                Ok(Decoded::Floats(out))
            }
            Prep::Audio {
                n_mels,
                frames,
                filters,
            } => {
                let p = self.path(v)?;
                let wav = audio::read_wav(&self.read(&p)?).map_err(|e| Error::data(&p, e))?;
                Ok(Decoded::Floats(audio::log_mel(
                    &wav, *n_mels, *frames, filters,
                )))
            }
        }
    }

    fn decode(&self, i: usize) -> Result<Vec<Decoded>, Error> {
        let line = &self.lines[i];
        self.modalities
            .iter()
            .zip(&self.preps)
            .map(|(m, p)| self.decode_one(line, m, p))
            .collect::<Result<Vec<_>, Error>>()
            .map_err(|e| Error::data_row(&self.manifest, line.number, e))
    }

    /// Decode samples `idx` into one host batch per modality, and the indices kept (all of
    /// them, unless bad samples are skipped).
    pub fn batch(&self, idx: &[usize]) -> Result<(Vec<HostInput>, Vec<usize>), Error> {
        let decoded: Vec<(usize, Result<Vec<Decoded>, Error>)> =
            idx.par_iter().map(|&i| (i, self.decode(i))).collect();
        let mut kept = Vec::with_capacity(idx.len());
        let mut rows: Vec<Vec<Decoded>> = Vec::with_capacity(idx.len());
        for (i, r) in decoded {
            match r {
                Ok(d) => {
                    kept.push(i);
                    rows.push(d);
                }
                Err(e) if !self.skip_bad => return Err(e),
                Err(_) => {
                    self.bad.lock().expect("bad set").insert(i);
                }
            }
        }
        let mut inputs = Vec::with_capacity(self.preps.len());
        for (t, prep) in self.preps.iter().enumerate() {
            let cells = rows
                .iter_mut()
                .map(|r| std::mem::replace(&mut r[t], Decoded::Text(String::new())));
            inputs.push(match prep {
                Prep::Text { tokenizer, max_len } => {
                    let texts: Vec<String> = cells
                        .map(|c| match c {
                            Decoded::Text(s) => s,
                            Decoded::Floats(_) => unreachable!("text prep decodes text"),
                        })
                        .collect();
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    HostInput::Tokens(text::tokenize(tokenizer, &refs, *max_len)?)
                }
                other => {
                    let mut data = Vec::new();
                    let mut dim = 0;
                    for c in cells {
                        if let Decoded::Floats(f) = c {
                            if dim != 0 && f.len() != dim {
                                return Err(Error::data(
                                    &self.manifest,
                                    format!(
                                        "feature rows of different lengths ({dim} and {})",
                                        f.len()
                                    ),
                                ));
                            }
                            dim = f.len();
                            data.extend(f);
                        }
                    }
                    match other {
                        Prep::Features => HostInput::Features { data, dim },
                        Prep::Vision { frames, .. } => HostInput::Pixels {
                            data,
                            frames: *frames,
                        },
                        _ => HostInput::Mel(data),
                    }
                }
            });
        }
        Ok((inputs, kept))
    }
}

pub fn manifest_path(dir: &Path, split: &str) -> PathBuf {
    dir.join(format!("{split}.jsonl"))
}

/// Whether `dir` holds a raw dataset (a `train.jsonl` manifest) rather than features.
pub fn is_raw(dir: &Path) -> bool {
    manifest_path(dir, "train").exists()
}
