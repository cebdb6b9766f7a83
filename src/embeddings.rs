//! Precomputed text embeddings: `siglipd embed` runs the text tower once per distinct prompt
//! and writes them to a file bound to the text model and tokenizer (their sha256). `run`
//! loads that file and never needs the text tower — unless the file is missing or stale and
//! the bundle has one, in which case it recomputes and says so.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::classify::l2_normalize;
use crate::config::{CameraConfig, Config};
use crate::engine::TextSide;
use crate::model::{Bundle, Precision, Tower};

const FORMAT: &str = "siglipd-embeddings";
/// 2: adds `vision_sha256`, so a vision-only bundle can tell a file made for its model.
const VERSION: u32 = 2;

/// Why the embeddings cannot be used with this bundle: a restart cannot fix it.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingsError {
    #[error("text embeddings file {path} {problem}, and model bundle {bundle} has no text tower to compute them: run `siglipd embed --config <file>` where the full bundle is available and copy the file here")]
    Unusable { path: String, problem: String, bundle: String },
    #[error("prompt {0:?} is missing from the embeddings file")]
    MissingPrompt(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EmbeddingsFile {
    pub format: String,
    pub version: u32,
    pub text_model_sha256: String,
    pub tokenizer_sha256: String,
    /// sha256 of every vision tower file of the bundle that made the file: the image side it
    /// belongs to.
    #[serde(default)]
    pub vision_sha256: Vec<String>,
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
    let sha = |name: &str| bundle.file_sha256(name);
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
        if self.format != FORMAT || self.version != VERSION {
            return Some(format!("format {} version {}, this siglipd writes version {VERSION}", self.format, self.version));
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
/// `must_write`: true for the `embed` command (whose job is the file: failing to write it is an
/// error); `run` recomputing stale embeddings goes on with them in memory if it cannot write.
pub fn embed(config: &Config, bundle: &Bundle, progress: bool, must_write: bool) -> anyhow::Result<EmbeddingsFile> {
    let b = binding(bundle)?
        .with_context(|| format!("model bundle {} has no text tower and tokenizer to embed labels with", bundle.dir.display()))?;
    let prompts = config.all_prompts();
    let mut text = TextSide::load(bundle, Precision::Fp32)?;
    let bar = if progress { indicatif::ProgressBar::new(prompts.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("embedding prompts {bar:30} {pos}/{len} ({eta} left)").expect("valid template"),
    );
    let mut out = BTreeMap::new();
    for p in &prompts {
        out.insert(p.clone(), text.embed(p)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let file = EmbeddingsFile {
        format: FORMAT.into(),
        version: VERSION,
        text_model_sha256: b.text_model_sha256,
        tokenizer_sha256: b.tokenizer_sha256,
        vision_sha256: vision_hashes(bundle)?,
        embed_dim: b.embed_dim,
        prompts: out,
    };
    match write(&config.model.embeddings, &file) {
        Ok(()) => info!(path = %config.model.embeddings.display(), prompts = prompts.len(), "wrote text embeddings"),
        // `run` can go on with them in memory; `embed` reports the failure
        Err(e) if !must_write => warn!(
            "{e:#}: using the embeddings in memory; set model.embeddings to a writable path (e.g. in the state directory) so that the next start does not recompute them"
        ),
        Err(e) => return Err(e),
    }
    Ok(file)
}

/// sha256 of each vision tower file of the bundle.
fn vision_hashes(bundle: &Bundle) -> anyhow::Result<Vec<String>> {
    let Some(spec) = bundle.tower_spec(Tower::Vision) else {
        return Ok(vec![]);
    };
    Ok(spec.files.values().map(|f| bundle.file_sha256(f)).collect::<Result<_, _>>()?)
}

/// A vision-only bundle cannot check the text side: the file must at least have been made for
/// this vision model and have its embedding size (else the dot product would zip vectors of
/// different lengths and score nonsense).
fn vision_mismatch(file: &EmbeddingsFile, bundle: &Bundle) -> anyhow::Result<Option<String>> {
    if file.format != FORMAT || file.version != VERSION {
        return Ok(Some(format!("is format {} version {} (this siglipd reads version {VERSION})", file.format, file.version)));
    }
    if file.embed_dim != bundle.manifest.embed_dim {
        return Ok(Some(format!(
            "has {}-dimensional embeddings but the vision model makes {}",
            file.embed_dim, bundle.manifest.embed_dim
        )));
    }
    let ours = vision_hashes(bundle)?;
    if !ours.iter().any(|h| file.vision_sha256.contains(h)) {
        return Ok(Some("was made for another vision model (no vision file sha256 in common)".into()));
    }
    Ok(None)
}

fn write(path: &Path, file: &EmbeddingsFile) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(file)?;
    // atomic: a crash mid-write never leaves a half file that `run` would load
    crate::state::write_atomic(path, &bytes)?;
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
                None => match vision_mismatch(&file, bundle)? {
                    Some(why) => why,
                    None if prompts.iter().all(|p| file.prompts.contains_key(p)) => return Ok(file),
                    None => "lacks some of the configured prompts".to_string(),
                },
            },
        },
    };
    if b.is_none() {
        return Err(
            EmbeddingsError::Unusable { path: path.display().to_string(), problem, bundle: bundle.dir.display().to_string() }.into()
        );
    }
    warn!("text embeddings file {} {problem}: computing it now with the text tower", path.display());
    embed(config, bundle, false, false)
}

/// One label ready to score: the averaged prompt embedding and its negatives. A label scored
/// from examples alone (`score = "examples"`) has neither: `positive` is empty.
#[derive(Debug, Clone)]
pub struct LabelEmbedding {
    pub positive: Vec<f32>,
    pub negatives: Vec<Vec<f32>>,
}

impl LabelEmbedding {
    /// False for a label without prompts (scored from examples alone).
    pub fn has_text(&self) -> bool {
        !self.positive.is_empty()
    }
}

/// The embeddings of a camera's labels, in config order. Prompt ensembles are averaged and
/// re-normalized (the usual CLIP/SigLIP prompt ensembling).
pub fn camera_labels(cam: &CameraConfig, file: &EmbeddingsFile) -> anyhow::Result<Vec<LabelEmbedding>> {
    let get = |p: &String| file.prompts.get(p).ok_or_else(|| EmbeddingsError::MissingPrompt(p.clone()));
    cam.labels
        .iter()
        .map(|l| {
            if l.prompts.is_empty() {
                return Ok(LabelEmbedding { positive: Vec::new(), negatives: Vec::new() });
            }
            let mut mean = vec![0f32; file.embed_dim];
            for p in &l.prompts {
                for (m, v) in mean.iter_mut().zip(get(p)?) {
                    *m += v;
                }
            }
            l2_normalize(&mut mean);
            let negatives = l.negative.iter().map(|p| get(p).cloned()).collect::<Result<_, _>>()?;
            Ok(LabelEmbedding { positive: mean, negatives })
        })
        .collect()
}
