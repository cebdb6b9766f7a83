//! Precomputed text embeddings: `siglipd embed` runs the text tower once per distinct prompt
//! and writes them to a file bound to the text model and tokenizer (their sha256). `run`
//! loads that file and never needs the text tower — unless the file is missing or stale and
//! the bundle has one, in which case it recomputes and says so.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::classify::l2_normalize;
use crate::config::{CameraConfig, Config};
use crate::engine::TextSide;
use crate::model::bundle::sha256_file;
use crate::model::{Bundle, Precision, Tower};

const FORMAT: &str = "siglipd-embeddings";

#[derive(Debug, Serialize, Deserialize)]
pub struct EmbeddingsFile {
    pub format: String,
    pub version: u32,
    pub text_model_sha256: String,
    pub tokenizer_sha256: String,
    pub embed_dim: usize,
    /// Unit-length embedding of each prompt.
    pub prompts: BTreeMap<String, Vec<f32>>,
}

/// What the file must be bound to for this bundle.
struct Binding {
    text_model_sha256: String,
    tokenizer_sha256: String,
    embed_dim: usize,
}

fn binding(bundle: &Bundle) -> anyhow::Result<Option<Binding>> {
    if !bundle.has_text() {
        return Ok(None);
    }
    let sha = |name: &str| -> anyhow::Result<String> {
        match bundle.manifest.sha256.get(name) {
            Some(h) => Ok(h.clone()),
            None => Ok(sha256_file(&bundle.dir.join(name))?),
        }
    };
    let text = bundle.tower_spec(Tower::Text).expect("has_text");
    let file = text.files.get("fp32").or_else(|| text.files.values().next()).expect("validated");
    Ok(Some(Binding {
        text_model_sha256: sha(file)?,
        tokenizer_sha256: sha(bundle.manifest.tokenizer.as_deref().expect("has_text"))?,
        embed_dim: bundle.manifest.embed_dim,
    }))
}

impl EmbeddingsFile {
    /// Why this file cannot serve `prompts` with this bundle, or None if it can.
    fn stale_reason(&self, b: &Binding, prompts: &[String]) -> Option<String> {
        if self.format != FORMAT || self.version != 1 {
            return Some("unknown format".into());
        }
        if self.text_model_sha256 != b.text_model_sha256 || self.tokenizer_sha256 != b.tokenizer_sha256 {
            return Some("made with a different text model or tokenizer".into());
        }
        if self.embed_dim != b.embed_dim {
            return Some(format!("embedding size {} but the model has {}", self.embed_dim, b.embed_dim));
        }
        let missing: Vec<&String> = prompts.iter().filter(|p| !self.prompts.contains_key(*p)).collect();
        if !missing.is_empty() {
            return Some(format!("{} prompt(s) not embedded, e.g. {:?}", missing.len(), missing[0]));
        }
        None
    }
}

/// `siglipd embed`: compute every prompt of the config and write the file.
pub fn embed(config: &Config, bundle: &Bundle, progress: bool) -> anyhow::Result<EmbeddingsFile> {
    let b = binding(bundle)?.with_context(|| {
        format!("model bundle {} has no text tower and tokenizer to embed labels with", bundle.dir.display())
    })?;
    let prompts = config.all_prompts();
    let mut text = TextSide::load(bundle, Precision::Fp32)?;
    let bar = if progress {
        indicatif::ProgressBar::new(prompts.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("embedding prompts {bar:30} {pos}/{len} ({eta} left)")
            .expect("valid template"),
    );
    let mut out = BTreeMap::new();
    for p in &prompts {
        out.insert(p.clone(), text.embed(p)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let file = EmbeddingsFile {
        format: FORMAT.into(),
        version: 1,
        text_model_sha256: b.text_model_sha256,
        tokenizer_sha256: b.tokenizer_sha256,
        embed_dim: b.embed_dim,
        prompts: out,
    };
    write(&config.model.embeddings, &file)?;
    info!(path = %config.model.embeddings.display(), prompts = prompts.len(), "wrote text embeddings");
    Ok(file)
}

fn write(path: &Path, file: &EmbeddingsFile) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(file)?).with_context(|| format!("cannot write {}", tmp.display()))?;
    // rename: a crash mid-write never leaves a half file that `run` would load
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// For `run`: load the file, or recompute it when it is missing/stale and the text tower is
/// available; otherwise a clear error telling what to run.
pub fn load_or_embed(config: &Config, bundle: &Bundle) -> anyhow::Result<EmbeddingsFile> {
    let path = &config.model.embeddings;
    let prompts = config.all_prompts();
    let b = binding(bundle)?;
    let problem = match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read: {e}"),
        Ok(bytes) => match serde_json::from_slice::<EmbeddingsFile>(&bytes) {
            Err(e) => format!("is not a valid embeddings file: {e}"),
            Ok(file) => match &b {
                Some(b) => match file.stale_reason(b, &prompts) {
                    None => return Ok(file),
                    Some(why) => format!("is stale ({why})"),
                },
                // no text tower to check against: trust a file that has every prompt
                None if prompts.iter().all(|p| file.prompts.contains_key(p)) => return Ok(file),
                None => "lacks some of the configured prompts".to_string(),
            },
        },
    };
    if b.is_none() {
        bail!(
            "text embeddings file {} {problem}, and model bundle {} has no text tower to compute them: run `siglipd embed --config <file>` where the full bundle is available and copy the file here",
            path.display(),
            bundle.dir.display()
        );
    }
    warn!("text embeddings file {} {problem}: computing it now with the text tower", path.display());
    embed(config, bundle, false)
}

/// One label ready to score: the averaged prompt embedding and its negatives.
#[derive(Debug, Clone)]
pub struct LabelEmbedding {
    pub positive: Vec<f32>,
    pub negatives: Vec<Vec<f32>>,
}

/// The embeddings of a camera's labels, in config order. Prompt ensembles are averaged and
/// re-normalized (the usual CLIP/SigLIP prompt ensembling).
pub fn camera_labels(cam: &CameraConfig, file: &EmbeddingsFile) -> anyhow::Result<Vec<LabelEmbedding>> {
    let get = |p: &String| {
        file.prompts.get(p).with_context(|| format!("prompt {p:?} is missing from the embeddings file"))
    };
    cam.labels
        .iter()
        .map(|l| {
            let mut mean = vec![0f32; file.embed_dim];
            for p in &l.prompts {
                for (m, v) in mean.iter_mut().zip(get(p)?) {
                    *m += v;
                }
            }
            l2_normalize(&mut mean);
            let negatives = l.negative.iter().map(|p| get(p).cloned()).collect::<anyhow::Result<_>>()?;
            Ok(LabelEmbedding { positive: mean, negatives })
        })
        .collect()
}
