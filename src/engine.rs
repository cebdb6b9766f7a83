//! A loaded model ready to score: preprocessing, the vision tower, and (when labels must be
//! embedded here) the tokenizer and text tower. One `Engine` belongs to one thread.
use std::collections::HashMap;
use std::path::Path;

use tracing::{debug, info};

use crate::classify::{rank, Calibration, LabelScore};
use crate::labels::Template;
use crate::model::preprocess::{self, ImageError};
use crate::model::{Bundle, ModelError, Precision, PrecisionChoice, Preprocessor, TextEncoder, TextTokenizer, Tower, VisionEncoder};

/// Why an ad-hoc classification (the web page) failed: the caller's image, or the model.
#[derive(Debug, thiserror::Error)]
pub enum AdhocError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Bytes of prompt embeddings (keys and vectors) kept for the page; cleared when over (typed
/// labels rarely repeat widely). Labels and templates are bounded (`labels`), so each entry is
/// at most a few KiB.
pub const LABEL_CACHE_BYTES: usize = 16 << 20;

pub struct TextSide {
    pub tokenizer: TextTokenizer,
    pub encoder: TextEncoder,
}

impl TextSide {
    /// Text tower precision: the vision choice when the bundle has it for text too, else fp32
    /// (label embeddings are computed once, so exactness matters more than speed there).
    pub fn load(bundle: &Bundle, vision: Precision) -> Result<Self, ModelError> {
        let available = bundle.precisions(Tower::Text);
        let precision = if available.contains(&vision) { vision } else { Precision::Fp32 };
        let m = &bundle.manifest;
        let tokenizer =
            TextTokenizer::from_file(&bundle.tokenizer_file()?, m.text_preprocessing.clone(), m.max_text_length, m.pad_id, m.eos_id)?;
        let encoder = TextEncoder::load(bundle, precision)?;
        Ok(Self { tokenizer, encoder })
    }

    /// Unit-length embedding of one prompt.
    pub fn embed(&mut self, prompt: &str) -> Result<Vec<f32>, ModelError> {
        let ids = self.tokenizer.encode(prompt)?;
        self.encoder.embed(&ids)
    }
}

pub struct Engine {
    pub bundle: Bundle,
    pub pre: Preprocessor,
    /// The precision `vision` runs at.
    pub precision: Precision,
    pub vision: VisionEncoder,
    pub text: Option<TextSide>,
    pub calibration: Calibration,
    /// Other precisions asked for by the page, loaded on first use.
    other_vision: HashMap<Precision, VisionEncoder>,
    label_cache: HashMap<String, Vec<f32>>,
    label_cache_bytes: usize,
    pixels: Vec<f32>,
}

impl Engine {
    pub fn load(bundle: Bundle, choice: PrecisionChoice, with_text: bool) -> Result<Self, ModelError> {
        let (precision, why) = crate::model::auto::resolve(&bundle, Tower::Vision, choice)?;
        info!(%precision, reason = why, "vision precision");
        let started = std::time::Instant::now();
        let vision = VisionEncoder::load(&bundle, precision)?;
        debug!(path = %vision.path().display(), ms = started.elapsed().as_millis() as u64, "vision tower loaded");
        let text = if with_text { Some(TextSide::load(&bundle, precision)?) } else { None };
        let pre = Preprocessor::new(&bundle.manifest);
        Ok(Self {
            pixels: vec![0.0; pre.tensor_len()],
            pre,
            precision,
            calibration: bundle.calibration(),
            bundle,
            vision,
            text,
            other_vision: HashMap::new(),
            label_cache: HashMap::new(),
            label_cache_bytes: 0,
        })
    }

    /// Scores an uploaded image against typed labels (the web page). Loads the text tower on
    /// first use and another precision's vision tower when asked for; caches prompt embeddings.
    pub fn classify_adhoc(
        &mut self,
        image: &[u8],
        max_pixels: u64,
        labels: &[String],
        template: &Template,
        precision: Option<Precision>,
    ) -> Result<Vec<LabelScore>, AdhocError> {
        let img = preprocess::decode(image, "the uploaded image", max_pixels)?;
        if self.text.is_none() {
            info!("loading the text tower for typed labels");
            self.text = Some(TextSide::load(&self.bundle, Precision::Fp32)?);
        }
        let text = self.text.as_mut().expect("loaded above");
        let mut embs = Vec::with_capacity(labels.len());
        for label in labels {
            let prompt = template.apply(label);
            let emb = match self.label_cache.get(&prompt) {
                Some(e) => e.clone(),
                None => {
                    let e = text.embed(&prompt)?;
                    let bytes = prompt.len() + 4 * e.len();
                    if self.label_cache_bytes + bytes > LABEL_CACHE_BYTES {
                        self.label_cache.clear();
                        self.label_cache_bytes = 0;
                    }
                    self.label_cache_bytes += bytes;
                    self.label_cache.insert(prompt, e.clone());
                    e
                }
            };
            embs.push((label.clone(), emb));
        }
        self.pre.pixels_into(&img, &mut self.pixels);
        let precision = precision.unwrap_or(self.precision);
        let emb = if precision == self.precision {
            self.vision.embed(&self.pixels)?
        } else {
            if !self.other_vision.contains_key(&precision) {
                info!(%precision, "loading another vision tower for the page");
                self.other_vision.insert(precision, VisionEncoder::load(&self.bundle, precision)?);
            }
            self.other_vision.get_mut(&precision).expect("loaded above").embed(&self.pixels)?
        };
        Ok(rank(&self.calibration, &emb, &embs))
    }

    /// Embeds `(label, prompt)` pairs with the text tower.
    pub fn embed_labels(&mut self, prompts: &[(String, String)]) -> Result<Vec<(String, Vec<f32>)>, ModelError> {
        let text = self.text.as_mut().ok_or_else(|| ModelError::Manifest {
            path: self.bundle.manifest_path(),
            reason: "the text tower was not loaded".into(),
        })?;
        prompts.iter().map(|(label, prompt)| Ok((label.clone(), text.embed(prompt)?))).collect()
    }

    pub fn image_embedding(&mut self, pixels: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.vision.embed(pixels)
    }

    /// sha256 of the running vision tower file (manifest checksum, else the file's): what
    /// examples' embeddings are bound to. Empty if it cannot be read.
    pub fn vision_sha256(&self) -> String {
        vision_sha256_of(&self.bundle, self.precision)
    }

    /// The unit image embedding of an encoded image (any format `preprocess::decode` reads).
    /// Errors: undecodable bytes (what names them), inference failure.
    pub fn embed_encoded(&mut self, bytes: &[u8], what: &str) -> anyhow::Result<Vec<f32>> {
        let img = preprocess::decode(bytes, what, self.pre.max_pixels)?;
        self.embed_rgb(&img)
    }

    /// The unit image embedding of a decoded image.
    pub fn embed_rgb(&mut self, img: &image::RgbImage) -> anyhow::Result<Vec<f32>> {
        let mut pixels = vec![0f32; self.pre.tensor_len()];
        self.pre.pixels_into(img, &mut pixels);
        Ok(self.vision.embed(&pixels)?)
    }

    pub fn score(&self, image: &[f32], labels: &[(String, Vec<f32>)]) -> Vec<LabelScore> {
        rank(&self.calibration, image, labels)
    }

    /// Decode, preprocess, embed and score one image file.
    pub fn classify_file(&mut self, path: &Path, labels: &[(String, Vec<f32>)]) -> anyhow::Result<Vec<LabelScore>> {
        let pixels = self.pre.load_file(path)?;
        let emb = self.image_embedding(&pixels)?;
        Ok(self.score(&emb, labels))
    }
}

/// An example's stored image: `img` scaled to at most `examples::IMAGE_SIDE` px on its longest
/// side (never up), JPEG quality 90. None if encoding fails.
pub fn example_jpeg(img: &image::RgbImage) -> Option<Vec<u8>> {
    let side = crate::examples::IMAGE_SIDE;
    let (w, h) = (img.width().max(1), img.height().max(1));
    let scaled;
    let view = if w.max(h) > side {
        let (nw, nh) = if w >= h { (side, (h * side / w).max(1)) } else { ((w * side / h).max(1), side) };
        scaled = image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle);
        &scaled
    } else {
        img
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(view).ok()?;
    Some(out)
}

/// sha256 of a bundle's vision tower file at `precision` (manifest checksum, else the file's),
/// without loading it; empty if it cannot be read. See [`Engine::vision_sha256`].
pub fn vision_sha256_of(bundle: &Bundle, precision: Precision) -> String {
    let file = bundle.tower_spec(Tower::Vision).and_then(|s| s.files.get(precision.file_key())).cloned();
    file.and_then(|f| bundle.file_sha256(&f).ok()).unwrap_or_default()
}
