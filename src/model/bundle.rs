//! A model bundle: a directory with `siglip.json` (the manifest written by
//! `tools/export_model.py` or `siglipd model pull`) and the files it names.
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::classify::Calibration;

pub const MANIFEST: &str = "siglip.json";
const FORMAT: &str = "siglipd-bundle";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("no model bundle at {path}: {reason} (make one with `python3 tools/export_model.py`, see models/README.md)")]
    NotABundle { path: PathBuf, reason: String },
    #[error("invalid manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("model file {path} is missing (named by {manifest} as {role})")]
    FileMissing { path: PathBuf, manifest: PathBuf, role: String },
    #[error("cannot read {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("model file {path} is corrupt: sha256 {actual} but the manifest says {expected}")]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("cannot load {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("{path} disagrees with the manifest: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("this bundle has no {precision} {tower} model (it has: {available})")]
    PrecisionUnavailable { precision: Precision, tower: Tower, available: String },
    #[error("cannot load tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("inference failed in the {tower} model: {reason}")]
    Inference { tower: Tower, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Int8,
    /// The fp32 file with its matrix products in half precision (tract's float translator at
    /// load, `encoder::optimize`; vision tower only). Fast only where the CPU has fp16 arithmetic (ARMv8.2 FEAT_FP16: Cortex-A55,
    /// A75, A76 as in the Pi 5, A78 as in Jetson Orin); elsewhere tract emulates it, slowly.
    Fp16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::Fp16 => "fp16",
        }
    }

    /// The manifest's `files` key of the ONNX file this precision runs: fp16 is made from the
    /// fp32 file at load, so it has no file of its own.
    pub fn file_key(self) -> &'static str {
        match self {
            Precision::Fp16 => Precision::Fp32.as_str(),
            p => p.as_str(),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for: a fixed precision, or `auto` (resolved by `Bundle::resolve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionChoice {
    Fixed(Precision),
    Auto,
}

impl FromStr for PrecisionChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fp32" => Ok(Self::Fixed(Precision::Fp32)),
            "int8" => Ok(Self::Fixed(Precision::Int8)),
            "fp16" => Ok(Self::Fixed(Precision::Fp16)),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown precision {other:?} (expected fp32, int8, fp16 or auto)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tower {
    Vision,
    Text,
}

impl fmt::Display for Tower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tower::Vision => "vision",
            Tower::Text => "text",
        })
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct TowerSpec {
    pub input: String,
    pub output: String,
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub int8_form: Option<String>,
    /// Per precision (`fp32`, `int8`), how that file's graph was reshaped for tract
    /// (`patch-embedding-matmul`, `mlp-split-N`): by `tools/export_model.py`'s
    /// `shape_vision_for_tract`, or for a pulled fp32 vision tower by `siglipd model pull`
    /// ([`crate::model::shape`]); empty for files that run as their exporter wrote them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub graph_shape: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct TextPreprocessing {
    #[serde(default = "yes")]
    pub lowercase: bool,
    #[serde(default = "yes")]
    pub strip_punctuation: bool,
    #[serde(default = "yes")]
    pub collapse_whitespace: bool,
}

fn yes() -> bool {
    true
}

/// `siglip.json`. Unknown keys are tolerated (newer exporters may add information), but every
/// key the pipeline needs must be present and sane. Written by `tools/export_model.py` and, from
/// this very type, by `siglipd model pull`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    pub image_size: u32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f64,
    pub resample: String,
    pub max_text_length: usize,
    pub pad_id: u32,
    pub eos_id: u32,
    pub text_preprocessing: TextPreprocessing,
    pub embed_dim: usize,
    pub logit_scale: f32,
    pub logit_bias: f32,
    pub vision: TowerSpec,
    #[serde(default)]
    pub text: Option<TowerSpec>,
    #[serde(default)]
    pub tokenizer: Option<String>,
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    /// Reads and validates the manifest. Model files are checked for existence here and for
    /// integrity (sha256) when they are loaded.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            let reason = if dir.exists() { "not a directory" } else { "no such directory" };
            return Err(ModelError::NotABundle { path: dir.to_path_buf(), reason: reason.into() });
        }
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                ModelError::NotABundle { path: dir.to_path_buf(), reason: format!("{MANIFEST} not found") }
            }
            _ => ModelError::Io { path: path.clone(), cause: e },
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| ModelError::Manifest { path: path.clone(), reason: e.to_string() })?;
        let bundle = Self { dir: dir.to_path_buf(), manifest };
        bundle.validate()?;
        Ok(bundle)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let m = &self.manifest;
        let bad = |reason: String| ModelError::Manifest { path: self.manifest_path(), reason };
        if m.format != FORMAT {
            return Err(bad(format!("format is {:?}, expected {FORMAT:?}", m.format)));
        }
        if m.format_version != FORMAT_VERSION {
            return Err(bad(format!("format_version {} is not supported (this siglipd reads {FORMAT_VERSION})", m.format_version)));
        }
        if m.resample != "bicubic" {
            return Err(bad(format!("resample {:?} is not supported (only bicubic)", m.resample)));
        }
        if m.image_size == 0 || m.image_size > 4096 {
            return Err(bad(format!("image_size {} is out of range", m.image_size)));
        }
        if m.image_std.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
            return Err(bad(format!("image_std {:?} must be positive", m.image_std)));
        }
        if m.max_text_length == 0 || m.embed_dim == 0 {
            return Err(bad("max_text_length and embed_dim must be positive".into()));
        }
        if !m.logit_scale.is_finite() || !m.logit_bias.is_finite() {
            return Err(bad("logit_scale and logit_bias must be finite numbers".into()));
        }
        if m.vision.files.is_empty() {
            return Err(bad("vision.files names no model file".into()));
        }
        for (tower, spec) in [(Tower::Vision, Some(&m.vision)), (Tower::Text, m.text.as_ref())] {
            for (precision, file) in spec.map(|s| &s.files).into_iter().flatten() {
                if precision != "fp32" && precision != "int8" {
                    return Err(bad(format!("{tower}.files has unknown precision {precision:?}")));
                }
                self.require_file(file, &format!("{tower}.files.{precision}"))?;
            }
        }
        if let Some(tok) = &m.tokenizer {
            self.require_file(tok, "tokenizer")?;
        }
        Ok(())
    }

    fn require_file(&self, name: &str, role: &str) -> Result<PathBuf, ModelError> {
        let path = self.dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::FileMissing { path, manifest: self.manifest_path(), role: role.into() })
        }
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    pub fn calibration(&self) -> Calibration {
        Calibration::from_log_scale(self.manifest.logit_scale, self.manifest.logit_bias)
    }

    fn spec(&self, tower: Tower) -> Option<&TowerSpec> {
        match tower {
            Tower::Vision => Some(&self.manifest.vision),
            Tower::Text => self.manifest.text.as_ref(),
        }
    }

    /// The precisions `tower` can run at: one per file in the manifest, plus fp16 for the
    /// vision tower wherever it has an fp32 file (see [`Precision::Fp16`]).
    pub fn precisions(&self, tower: Tower) -> Vec<Precision> {
        let Some(spec) = self.spec(tower) else {
            return vec![];
        };
        let mut ps: Vec<Precision> =
            [Precision::Fp32, Precision::Int8].into_iter().filter(|p| spec.files.contains_key(p.as_str())).collect();
        // the vision tower only: label embeddings are computed once, where exactness matters more
        if tower == Tower::Vision && ps.contains(&Precision::Fp32) {
            ps.push(Precision::Fp16);
        }
        ps
    }

    pub fn has_text(&self) -> bool {
        self.manifest.text.is_some() && self.manifest.tokenizer.is_some()
    }

    /// Resolves `auto`. `auto` picks a reduced form (int8) only from a `siglipd bench --save`
    /// measurement on this CPU (`auto.json`) that found it the fastest *and* within the parity
    /// gate (embedding cosine ≥ 0.999 against fp32, measured on this CPU); without one it
    /// takes fp32, the exact form. Returns the choice and why it was made.
    ///
    /// `saved`: the vision precision of a saved `bench --save` choice valid for this CPU and
    /// these files (`model::auto::resolve` reads it), if any.
    pub fn resolve_with(
        &self,
        tower: Tower,
        choice: PrecisionChoice,
        saved: Option<Precision>,
    ) -> Result<(Precision, &'static str), ModelError> {
        let available = self.precisions(tower);
        match choice {
            PrecisionChoice::Fixed(p) if available.contains(&p) => Ok((p, "requested")),
            PrecisionChoice::Fixed(p) => Err(ModelError::PrecisionUnavailable { precision: p, tower, available: list(&available) }),
            PrecisionChoice::Auto => {
                if tower == Tower::Vision {
                    if let Some(p) = saved.filter(|p| available.contains(p)) {
                        return Ok((p, "auto: measured fastest and parity-checked on this CPU by `siglipd bench --save`"));
                    }
                }
                let form = self.spec(tower).and_then(|s| s.int8_form.clone()).unwrap_or_default();
                let has_fp32 = available.contains(&Precision::Fp32);
                if has_fp32 && available.contains(&Precision::Int8) && Self::is_compute_form(&form) {
                    Ok((
                        Precision::Fp32,
                        "auto: the int8 compute form has not been measured and parity-checked on this CPU (`siglipd bench --save` does both)",
                    ))
                } else if has_fp32 {
                    Ok((Precision::Fp32, "auto: the int8 weights are expanded to fp32 for every matmul in tract, so fp32 is faster and exact (int8 saves memory; `siglipd bench --save` measures)"))
                } else if let Some(p) = available.last() {
                    Ok((*p, "auto: the only precision in this bundle"))
                } else {
                    Err(ModelError::PrecisionUnavailable { precision: Precision::Fp32, tower, available: "none".into() })
                }
            }
        }
    }

    /// Whether an `int8_form` runs integer arithmetic in tract (`dynamic-int8`,
    /// `static-int8-compute`) rather than only storing int8 weights (`weight-only-…`, a memory form).
    pub fn is_compute_form(form: &str) -> bool {
        form.starts_with("dynamic") || form.starts_with("static")
    }

    /// ARMv8.2 dot product (SDOT/UDOT), where tract's int8 matmul kernels beat fp32.
    pub fn cpu_has_int8_dot() -> bool {
        #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
        {
            const HWCAP_ASIMDDP: libc::c_ulong = 1 << 20;
            // SAFETY: getauxval has no preconditions
            return unsafe { libc::getauxval(libc::AT_HWCAP) } & HWCAP_ASIMDDP != 0;
        }
        #[allow(unreachable_code)]
        false
    }

    /// Path of a tower's model file after checking its sha256 against the manifest.
    pub fn model_file(&self, tower: Tower, precision: Precision) -> Result<PathBuf, ModelError> {
        let spec = self.spec(tower).ok_or_else(|| ModelError::PrecisionUnavailable { precision, tower, available: "none".into() })?;
        let name = spec
            .files
            .get(precision.file_key())
            .filter(|_| self.precisions(tower).contains(&precision))
            .ok_or_else(|| ModelError::PrecisionUnavailable { precision, tower, available: list(&self.precisions(tower)) })?;
        let path = self.require_file(name, &format!("{tower}.files.{}", precision.file_key()))?;
        self.verify(name, &path)?;
        Ok(path)
    }

    pub fn tower_spec(&self, tower: Tower) -> Option<&TowerSpec> {
        self.spec(tower)
    }

    pub fn tokenizer_file(&self) -> Result<PathBuf, ModelError> {
        let name = self.manifest.tokenizer.as_deref().ok_or_else(|| ModelError::Manifest {
            path: self.manifest_path(),
            reason: "no tokenizer in this bundle (it cannot score new labels)".into(),
        })?;
        let path = self.require_file(name, "tokenizer")?;
        self.verify(name, &path)?;
        Ok(path)
    }

    /// The sha256 of a bundle file: the manifest's, else the file's own (bundles made without
    /// checksums). What embeddings, examples and `auto.json` are bound to.
    pub fn file_sha256(&self, name: &str) -> Result<String, ModelError> {
        match self.manifest.sha256.get(name) {
            Some(h) => Ok(h.clone()),
            None => sha256_file(&self.dir.join(name)),
        }
    }

    /// Checks a file against its manifest sha256, when the manifest has one. Catches truncated
    /// downloads and copy errors with a message naming the file instead of a parser error.
    fn verify(&self, name: &str, path: &Path) -> Result<(), ModelError> {
        let Some(expected) = self.manifest.sha256.get(name) else {
            return Ok(());
        };
        let actual = sha256_file(path)?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(ModelError::Checksum { path: path.to_path_buf(), expected: expected.clone(), actual });
        }
        Ok(())
    }
}

pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io = |e| ModelError::Io { path: path.to_path_buf(), cause: e };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn list(ps: &[Precision]) -> String {
    if ps.is_empty() {
        return "none".into();
    }
    ps.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}
