//! Teaching a label by example: the per-label model fitted on marked examples, the score it
//! gives a frame, and what the examples suggest for the thresholds.
//!
//! Features of an image embedding `e` (all unit length), for a label with a prompt:
//! `[zero-shot logit, cos(e, mean positive), cos(e, mean negative)]`, where the logit is
//! `cos(e, text)·exp(logit_scale) + logit_bias` (SigLIP, arXiv:2303.15343); a label scored
//! from examples alone (`score = "examples"`) has only the two prototype cosines. The model on
//! them is `calibrate`'s L2 logistic regression on standardized features (scikit-learn's
//! `make_pipeline(StandardScaler(), LogisticRegression(C=1))`): prototype cosines of one model
//! differ by hundredths, which an unscaled penalised fit would flatten to 0.5.
//!
//! Training features are computed as leave-one-out features: example `i`'s prototype cosines
//! use means over the *other* examples, so a positive is not rewarded for being part of its own
//! mean (a frame the daemon scores never is). Leave-one-out probabilities (each example scored
//! by a model fitted without it) give the honest precision/recall shown on the page.
use serde::Serialize;

use crate::calibrate::{self, FitError, ScaledFit};
use crate::classify::{dot, l2_normalize, sigmoid, Calibration};
use crate::config::ScoreKind;
use crate::examples::Example;

/// A label's model fitted on its marked examples.
#[derive(Debug, Clone)]
pub struct LabelFit {
    /// The label's text embedding (unit), None for a label without prompts.
    text: Option<Vec<f32>>,
    cal: Calibration,
    mean_positive: Vec<f32>,
    mean_negative: Vec<f32>,
    fit: ScaledFit,
    pub positives: usize,
    pub negatives: usize,
}

impl LabelFit {
    /// The fitted probability (0..1) that the image with unit embedding `image` shows the label.
    pub fn probability(&self, image: &[f32]) -> f32 {
        let x = features(image, self.text.as_deref(), &self.cal, &self.mean_positive, &self.mean_negative);
        self.fit.probability(&x) as f32
    }
}

fn features(image: &[f32], text: Option<&[f32]>, cal: &Calibration, mean_pos: &[f32], mean_neg: &[f32]) -> Vec<f64> {
    let mut x = Vec::with_capacity(3);
    if let Some(t) = text {
        x.push((dot(image, t) * cal.scale + cal.bias) as f64);
    }
    x.push(dot(image, mean_pos) as f64);
    x.push(dot(image, mean_neg) as f64);
    x
}

/// The "yes" and "no" embeddings summed once, so a prototype leaving one example out costs
/// one subtraction instead of a pass over every example (fits and leave-one-out need one per
/// example: n² and n³ passes otherwise, at up to 500 examples).
struct ClassSums {
    pos: Vec<f32>,
    neg: Vec<f32>,
}

impl ClassSums {
    fn of(examples: &[Example], dim: usize) -> Self {
        let mut s = Self { pos: vec![0f32; dim], neg: vec![0f32; dim] };
        for e in examples {
            let sum = if e.positive { &mut s.pos } else { &mut s.neg };
            sum.iter_mut().zip(&e.embedding).for_each(|(a, b)| *a += b);
        }
        s
    }

    /// The normalized mean "yes" and mean "no" embeddings (zero for a class with none),
    /// without example `without` if given.
    fn prototypes(&self, examples: &[Example], without: Option<usize>) -> (Vec<f32>, Vec<f32>) {
        let (mut p, mut n) = (self.pos.clone(), self.neg.clone());
        if let Some(e) = without.map(|i| &examples[i]) {
            let sum = if e.positive { &mut p } else { &mut n };
            sum.iter_mut().zip(&e.embedding).for_each(|(a, b)| *a -= b);
        }
        l2_normalize(&mut p);
        l2_normalize(&mut n);
        (p, n)
    }
}

/// The crop region (index into `embeddings`, one per region) where a label scores best: by
/// its text embedding, or for a label without prompts by its fit; the first without either.
pub fn best_region(embeddings: &[Vec<f32>], text: &[f32], fit: Option<&LabelFit>) -> usize {
    let score = |e: &[f32]| match (text.is_empty(), fit) {
        (false, _) => dot(e, text),
        (true, Some(f)) => f.probability(e),
        (true, None) => 0.0,
    };
    (0..embeddings.len()).max_by(|&a, &b| score(&embeddings[a]).total_cmp(&score(&embeddings[b]))).unwrap_or(0)
}

/// An image as an example of a label on a camera with crop regions `crops` (empty: the whole
/// image): the embedding of the region where the label scores best (as for a marked frame)
/// and that region as the stored JPEG. Errors: inference failure.
pub fn example_from_image(
    engine: &mut crate::engine::Engine,
    img: &image::RgbImage,
    crops: &[[f64; 4]],
    text: &[f32],
    fit: Option<&LabelFit>,
) -> anyhow::Result<(Vec<f32>, Option<Vec<u8>>)> {
    let regions: Vec<image::RgbImage> = if crops.is_empty() {
        vec![img.clone()]
    } else {
        crops.iter().map(|r| crate::model::preprocess::crop_region(img, r)).collect()
    };
    let embeddings = regions.iter().map(|r| engine.embed_rgb(r)).collect::<anyhow::Result<Vec<_>>>()?;
    let best = best_region(&embeddings, text, fit);
    Ok((embeddings[best].clone(), crate::engine::example_jpeg(&regions[best])))
}

/// What [`fit_label`] and [`suggest`] need of a label besides its examples.
#[derive(Debug, Clone, Copy)]
pub struct LabelText<'a> {
    /// The label's text embedding; None (or empty) for a label scored from examples alone.
    pub text: Option<&'a [f32]>,
    pub cal: Calibration,
}

impl LabelText<'_> {
    fn text(&self) -> Option<&[f32]> {
        self.text.filter(|t| !t.is_empty())
    }

    /// Example `i`'s features with prototypes over every example but `without`.
    fn features_of(&self, examples: &[Example], sums: &ClassSums, i: usize, without: usize) -> Vec<f64> {
        let (p, n) = sums.prototypes(examples, Some(without));
        features(&examples[i].embedding, self.text(), &self.cal, &p, &n)
    }
}

fn enough(examples: &[Example]) -> (usize, usize, bool) {
    let positives = examples.iter().filter(|e| e.positive).count();
    let negatives = examples.len() - positives;
    (positives, negatives, positives >= calibrate::MIN_PER_CLASS && negatives >= calibrate::MIN_PER_CLASS)
}

/// The examples' common embedding dimension (a store mixing two is corrupt).
fn same_dimension(examples: &[Example]) -> Result<usize, FitError> {
    let dim = examples.first().map_or(0, |e| e.embedding.len());
    match examples.iter().find(|e| e.embedding.len() != dim) {
        Some(e) => Err(FitError::Shape { got: e.embedding.len(), want: dim }),
        None => Ok(dim),
    }
}

/// Fits a label on its examples; `Ok(None)` until there are [`calibrate::MIN_PER_CLASS`]
/// positives and negatives ("not enough examples": the label's score does not change).
///
/// Errors: examples of different dimensions, or non-finite embeddings (a corrupt store).
pub fn fit_label(examples: &[Example], label: LabelText) -> Result<Option<LabelFit>, FitError> {
    let (positives, negatives, ok) = enough(examples);
    if !ok {
        return Ok(None);
    }
    let dim = same_dimension(examples)?;
    let sums = ClassSums::of(examples, dim);
    let x: Vec<Vec<f64>> = (0..examples.len()).map(|i| label.features_of(examples, &sums, i, i)).collect();
    let y: Vec<bool> = examples.iter().map(|e| e.positive).collect();
    let fit = calibrate::fit_scaled(&x, &y, calibrate::DEFAULT_C)?;
    let (mean_positive, mean_negative) = sums.prototypes(examples, None);
    Ok(Some(LabelFit {
        text: label.text().map(<[f32]>::to_vec),
        cal: label.cal,
        mean_positive,
        mean_negative,
        fit,
        positives,
        negatives,
    }))
}

/// What the marked examples say about a label.
#[derive(Debug, Serialize)]
pub struct Suggestion {
    /// The score the label's thresholds apply to (`score` in its config).
    pub score: ScoreKind,
    pub positives: usize,
    pub negatives: usize,
    /// False until there are `calibrate::MIN_PER_CLASS` of each: then nothing is suggested.
    pub enough: bool,
    /// The fitted model's leave-one-out precision and recall at probability 0.5.
    pub loo_precision: Option<f64>,
    pub loo_recall: Option<f64>,
    /// The precision asked for.
    pub target_precision: f64,
    /// The lowest `on` threshold on the label's score that reaches the target on the
    /// examples (for a calibrated label: on their leave-one-out probabilities), and `off` at
    /// the configured gap below it.
    pub on: Option<f32>,
    pub off: Option<f32>,
    /// Precision and recall of that threshold on the examples.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// ON episodes that threshold would have started over the recorded history (hysteresis
    /// on the recorded score before smoothing), against what the current thresholds started.
    pub history_episodes: Option<usize>,
    pub current_history_episodes: usize,
}

/// Rising edges of `raw ≥ on` with hysteresis down to `off`.
pub fn episodes(raw: &[f32], on: f32, off: f32) -> usize {
    let mut state = false;
    let mut n = 0;
    for &r in raw {
        if !state && r >= on {
            state = true;
            n += 1;
        } else if state && r < off {
            state = false;
        }
    }
    n
}

/// What a label's thresholds apply to, and how they are set now.
#[derive(Debug, Clone, Copy)]
pub struct Thresholding {
    pub score: ScoreKind,
    /// Configured `on − off`.
    pub gap: f32,
    /// The thresholds in force `(on, off)`.
    pub current: (f32, f32),
}

/// Fits with leave-one-out and suggests thresholds (see the module docs). `history` is the
/// label's recorded score (the one its thresholds apply to), oldest first.
pub fn suggest(
    examples: &[Example],
    label: LabelText,
    how: Thresholding,
    target_precision: f64,
    history: &[f32],
) -> Result<Suggestion, FitError> {
    let (positives, negatives, enough) = enough(examples);
    let mut s = Suggestion {
        score: how.score,
        positives,
        negatives,
        enough,
        loo_precision: None,
        loo_recall: None,
        target_precision,
        on: None,
        off: None,
        precision: None,
        recall: None,
        history_episodes: None,
        current_history_episodes: episodes(history, how.current.0, how.current.1),
    };
    if !enough {
        return Ok(s);
    }
    let sums = ClassSums::of(examples, same_dimension(examples)?);
    let y: Vec<bool> = examples.iter().map(|e| e.positive).collect();
    let loo = calibrate::leave_one_out(&y, calibrate::DEFAULT_C, |i, held| label.features_of(examples, &sums, i, held))?;
    let (p, r) = calibrate::precision_recall(&loo, &y, 0.5);
    s.loo_precision = Some(p);
    s.loo_recall = Some(r);
    // thresholds apply to the label's own score: the zero-shot one, or the fitted probability
    let scores: Vec<f64> = match (how.score, label.text()) {
        (ScoreKind::ZeroShot, Some(t)) => {
            examples.iter().map(|e| sigmoid(dot(&e.embedding, t) * label.cal.scale + label.cal.bias) as f64).collect()
        }
        _ => loo,
    };
    if let Some(t) = calibrate::threshold_for_precision(&scores, &y, target_precision) {
        let (p, r) = calibrate::precision_recall(&scores, &y, t);
        let on = t as f32;
        let off = (on - how.gap).max(0.0);
        s.on = Some(on);
        s.off = Some(off);
        s.precision = Some(p);
        s.recall = Some(r);
        s.history_episodes = Some(episodes(history, on, off));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        l2_normalize(&mut v);
        v
    }

    fn ex(id: u64, positive: bool, v: &[f32]) -> Example {
        Example { id, positive, created: 0.0, embedding: unit(v), image_sha256: None }
    }

    fn cal() -> Calibration {
        Calibration::from_log_scale(10f32.ln(), -5.0)
    }

    #[test]
    fn hysteresis_episodes() {
        assert_eq!(episodes(&[0.1, 0.6, 0.55, 0.45, 0.6, 0.3, 0.7], 0.5, 0.4), 2);
        assert_eq!(episodes(&[], 0.5, 0.4), 0);
    }

    #[test]
    fn suggestions_need_enough_examples_and_find_the_separating_threshold() {
        let label = unit(&[1.0, 0.0, 0.0]);
        let lt = LabelText { text: Some(&label), cal: cal() };
        let how = Thresholding { score: ScoreKind::ZeroShot, gap: 0.1, current: (0.5, 0.4) };
        // positives point close to the label, negatives away from it
        let mut examples = vec![ex(0, true, &[1.0, 0.1, 0.0]), ex(1, true, &[1.0, 0.0, 0.2]), ex(2, false, &[0.2, 1.0, 0.0])];
        let s = suggest(&examples, lt, how, 0.9, &[]).unwrap();
        assert!(!s.enough && s.on.is_none(), "2 positives, 1 negative: nothing yet");
        assert!(fit_label(&examples, lt).unwrap().is_none());
        examples.extend([ex(3, true, &[1.0, 0.2, 0.1]), ex(4, false, &[0.3, 0.0, 1.0]), ex(5, false, &[0.1, 1.0, 1.0])]);
        let history = [0.1f32, 0.2, 0.99, 0.98, 0.1, 0.97, 0.1];
        let s = suggest(&examples, lt, how, 1.0, &history).unwrap();
        assert!(s.enough);
        assert_eq!((s.precision, s.recall), (Some(1.0), Some(1.0)), "{s:?}");
        let on = s.on.unwrap();
        let lowest_positive = examples.iter().filter(|e| e.positive).map(|e| cal().score(&e.embedding, &label)).fold(1.0, f32::min);
        assert!((on - lowest_positive).abs() < 1e-6, "the lowest threshold that keeps every negative out: {on} vs {lowest_positive}");
        assert!((s.off.unwrap() - (on - 0.1)).abs() < 1e-6);
        assert_eq!(s.loo_precision, Some(1.0));
        assert_eq!(s.history_episodes, Some(episodes(&history, on, on - 0.1)));
        // a calibrated label's thresholds apply to the fitted probability: the suggestion is one
        let s = suggest(&examples, lt, Thresholding { score: ScoreKind::Calibrated, ..how }, 1.0, &history).unwrap();
        assert_eq!(s.score, ScoreKind::Calibrated);
        assert!(s.on.unwrap() > 0.0 && s.on.unwrap() < 1.0 && s.precision == Some(1.0), "{s:?}");
    }

    #[test]
    fn a_label_from_examples_alone_scores_its_own_kind_highest() {
        // no text: the two prototype cosines are the only features
        let lt = LabelText { text: None, cal: cal() };
        let a = [1.0, 0.2, 0.0, 0.1];
        let examples = vec![
            ex(0, true, &a),
            ex(1, true, &[1.0, 0.25, 0.05, 0.1]),
            ex(2, true, &[0.95, 0.2, 0.0, 0.15]),
            ex(3, false, &[0.0, 1.0, 0.3, 0.0]),
            ex(4, false, &[0.1, 0.0, 1.0, 0.2]),
            ex(5, false, &[0.0, 0.3, 0.1, 1.0]),
        ];
        let f = fit_label(&examples, lt).unwrap().expect("3 and 3 examples: fitted");
        assert_eq!((f.positives, f.negatives), (3, 3));
        let p = |v: &[f32]| f.probability(&unit(v));
        let (pa, pa2, pb, pc) = (p(&a), p(&[1.0, 0.22, 0.02, 0.08]), p(&[0.0, 1.0, 0.0, 0.0]), p(&[0.2, 0.1, 0.9, 0.9]));
        assert!(pa > 0.5 && pa2 > 0.5 && pb < 0.5 && pc < 0.5, "A {pa}, A' {pa2}, B {pb}, C {pc}");
        assert!(fit_label(&examples[..4], lt).unwrap().is_none(), "back to not enough examples");
    }

    #[test]
    fn mixed_dimensions_are_an_error_not_a_panic() {
        let lt = LabelText { text: None, cal: cal() };
        let mut examples: Vec<Example> = (0..6).map(|i| ex(i, i < 3, &[1.0, i as f32])).collect();
        examples[5].embedding = vec![1.0, 0.0, 0.0];
        assert!(matches!(fit_label(&examples, lt), Err(FitError::Shape { .. })));
    }
}
