//! A loaded model ready to score: preprocessing, the vision tower, and (when labels must be
//! embedded here) the tokenizer and text tower. One `Engine` belongs to one thread.
use std::path::Path;

use tracing::{debug, info};

use crate::classify::{rank, Calibration, LabelScore};
use crate::model::{
    Bundle, ModelError, Precision, PrecisionChoice, Preprocessor, TextEncoder, TextTokenizer, Tower,
    VisionEncoder,
};

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
        let tokenizer = TextTokenizer::from_file(
            &bundle.tokenizer_file()?,
            m.text_preprocessing.clone(),
            m.max_text_length,
            m.pad_id,
            m.eos_id,
        )?;
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
    pub vision: VisionEncoder,
    pub text: Option<TextSide>,
    pub calibration: Calibration,
}

impl Engine {
    pub fn load(bundle: Bundle, choice: PrecisionChoice, with_text: bool) -> Result<Self, ModelError> {
        let (precision, why) = bundle.resolve(Tower::Vision, choice)?;
        info!(%precision, reason = why, "vision precision");
        let started = std::time::Instant::now();
        let vision = VisionEncoder::load(&bundle, precision)?;
        debug!(path = %vision.path().display(), ms = started.elapsed().as_millis() as u64, "vision tower loaded");
        let text = if with_text { Some(TextSide::load(&bundle, precision)?) } else { None };
        Ok(Self {
            pre: Preprocessor::new(&bundle.manifest),
            calibration: bundle.calibration(),
            bundle,
            vision,
            text,
        })
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

    pub fn score(&self, image: &[f32], labels: &[(String, Vec<f32>)]) -> Vec<LabelScore> {
        rank(&self.calibration, image, labels)
    }

    /// Decode, preprocess, embed and score one image file.
    pub fn classify_file(
        &mut self,
        path: &Path,
        labels: &[(String, Vec<f32>)],
    ) -> anyhow::Result<Vec<LabelScore>> {
        let pixels = self.pre.load_file(path)?;
        let emb = self.image_embedding(&pixels)?;
        Ok(self.score(&emb, labels))
    }
}
