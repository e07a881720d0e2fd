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
//!
//! A sample may omit the field (or give `null`) of a modality `dataset.json` lists under
//! `"missing"`: it lacks that modality; its model input is a placeholder (zeros, an empty
//! text) the loss never uses. The field of any other modality is required.

use crate::data::batch::HostBatch;
use crate::error::Error;
use crate::model::encoders::{EncoderSpec, HostInput, Kind, audio, text, vision, wav};
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
        prep: vision::ImagePrep,
        frames: usize,
    },
    Audio {
        arch: Box<audio::AudioArch>,
        /// The log-mel AST's filters, computed once.
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
            Kind::Clip | Kind::Siglip => Prep::Vision {
                prep: vision::ImagePrep::of(
                    vision::Family::of(spec.kind),
                    &vision::VitConfig::from_json(&spec.config, vision::Family::of(spec.kind))?,
                    &spec.preprocessor,
                )?,
                frames: spec.frames.max(1),
            },
            Kind::Ast | Kind::AstMel => {
                let arch = audio::AudioArch::of(&spec.config, &spec.preprocessor)?;
                Prep::Audio {
                    filters: arch.filters(),
                    arch: Box::new(arch),
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
    /// The sample lacks this modality.
    Missing,
}

pub struct RawSplit {
    pub manifest: PathBuf,
    base: PathBuf,
    lines: Vec<Line>,
    pub modalities: Vec<String>,
    preps: Vec<Prep>,
    /// Per modality: samples may omit it.
    may_miss: Vec<bool>,
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
        may_miss: Vec<bool>,
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
            may_miss,
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

    /// Whether sample `i` omits (or gives `null` for) a modality samples may lack.
    pub fn incomplete(&self, i: usize) -> bool {
        let fields = &self.lines[i].fields;
        (0..self.modalities.len()).any(|t| {
            self.may_miss[t]
                && fields
                    .get(field_of(&self.modalities[t]))
                    .is_none_or(serde_json::Value::is_null)
        })
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

    fn decode_one(&self, line: &Line, t: usize) -> Result<Decoded, Error> {
        let (prep, field) = (&self.preps[t], field_of(&self.modalities[t]));
        let v = match line.fields.get(field) {
            None | Some(serde_json::Value::Null) if self.may_miss[t] => {
                return Ok(Decoded::Missing);
            }
            Some(v) => v,
            None => return Err(Error::decode(format!("no field \"{field}\""))),
        };
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
            Prep::Vision { prep, frames } => {
                let paths: Vec<&serde_json::Value> = match v {
                    serde_json::Value::Array(a) if !a.is_empty() => a.iter().collect(),
                    serde_json::Value::Array(_) => {
                        return Err(Error::decode(format!("\"{field}\" is empty")));
                    }
                    one => vec![one],
                };
                let mut out = Vec::with_capacity(frames * 3 * prep.size * prep.size);
                for i in vision::sample_frames(paths.len(), *frames) {
                    let p = self.path(paths[i])?;
                    let px = vision::preprocess(&self.read(&p)?, prep)
                        .map_err(|e| Error::data(&p, e))?;
                    out.extend(px);
                }
                Ok(Decoded::Floats(out))
            }
            Prep::Audio { arch, filters } => {
                let p = self.path(v)?;
                let wav = wav::read_wav(&self.read(&p)?).map_err(|e| Error::data(&p, e))?;
                Ok(Decoded::Floats(arch.features(&wav, filters)))
            }
        }
    }

    fn decode(&self, i: usize) -> Result<Vec<Decoded>, Error> {
        let line = &self.lines[i];
        let cells = (0..self.modalities.len())
            .map(|t| self.decode_one(line, t))
            .collect::<Result<Vec<_>, Error>>()
            .map_err(|e| Error::data_row(&self.manifest, line.number, e))?;
        // The anchor is never missing (its field is required), so one present cell besides it
        // means: more than one present cell.
        if cells
            .iter()
            .filter(|c| !matches!(c, Decoded::Missing))
            .count()
            < 2
        {
            return Err(Error::data_row(
                &self.manifest,
                line.number,
                "lacks every modality but the anchor (nothing to align it to)",
            ));
        }
        Ok(cells)
    }

    /// Decode samples `idx` into one host batch per modality, the indices kept (all of them,
    /// unless bad samples are skipped) and which samples lack each modality.
    pub fn batch(&self, idx: &[usize]) -> Result<HostBatch, Error> {
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
        let (mut inputs, mut missing) = (Vec::new(), Vec::new());
        for t in 0..self.preps.len() {
            let cells: Vec<Decoded> = rows
                .iter_mut()
                .map(|r| std::mem::replace(&mut r[t], Decoded::Missing))
                .collect();
            missing.push(
                cells
                    .iter()
                    .map(|c| matches!(c, Decoded::Missing))
                    .collect(),
            );
            inputs.push(self.assemble(t, cells)?);
        }
        Ok(HostBatch {
            inputs,
            kept,
            missing,
        })
    }

    /// Modality `t`'s decoded cells as one model input; a missing cell becomes an empty text or
    /// zeros of the present cells' size.
    fn assemble(&self, t: usize, cells: Vec<Decoded>) -> Result<HostInput, Error> {
        let prep = &self.preps[t];
        if let Prep::Text { tokenizer, max_len } = prep {
            let texts: Vec<String> = cells
                .into_iter()
                .map(|c| match c {
                    Decoded::Text(s) => s,
                    _ => String::new(),
                })
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            return Ok(HostInput::Tokens(text::tokenize(
                tokenizer, &refs, *max_len,
            )?));
        }
        let dim = match prep {
            Prep::Vision { prep, frames } => Some(frames * 3 * prep.size * prep.size),
            Prep::Audio { arch, .. } => Some(arch.input_len()),
            _ => cells.iter().find_map(|c| match c {
                Decoded::Floats(f) => Some(f.len()),
                _ => None,
            }),
        }
        .unwrap_or(0);
        let mut data = Vec::with_capacity(cells.len() * dim);
        for c in cells {
            match c {
                Decoded::Floats(f) if f.len() == dim => data.extend(f),
                Decoded::Floats(f) => {
                    return Err(Error::data(
                        &self.manifest,
                        format!("feature rows of different lengths ({dim} and {})", f.len()),
                    ));
                }
                _ => data.resize(data.len() + dim, 0.0),
            }
        }
        Ok(match prep {
            Prep::Vision { frames, .. } => HostInput::Pixels {
                data,
                frames: *frames,
            },
            Prep::Audio { .. } => HostInput::Mel(data),
            _ => HostInput::Features { data, dim },
        })
    }
}

pub fn manifest_path(dir: &Path, split: &str) -> PathBuf {
    dir.join(format!("{split}.jsonl"))
}

/// Whether `dir` holds a raw dataset (a `train.jsonl` manifest) rather than features.
pub fn is_raw(dir: &Path) -> bool {
    manifest_path(dir, "train").exists()
}
