//! Scores: cosine similarity → sigmoid(cos·exp(logit_scale) + logit_bias), one label at a time.
//!
//! Invariant: every label is scored on its own (SigLIP's sigmoid loss); scores never depend on
//! which other labels are present, so there is no softmax anywhere.
use serde::Serialize;

/// Scales `v` to unit length in place. A zero vector stays zero (its cosine with anything is 0).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The two learned scalars of a SigLIP checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// `exp(logit_scale)` of the checkpoint (the parameter is stored in log space).
    pub scale: f32,
    pub bias: f32,
}

impl Calibration {
    pub fn from_log_scale(logit_scale: f32, logit_bias: f32) -> Self {
        Self { scale: logit_scale.exp(), bias: logit_bias }
    }

    /// Probability for one label from unit-length embeddings.
    pub fn score(&self, image: &[f32], text: &[f32]) -> f32 {
        sigmoid(dot(image, text) * self.scale + self.bias)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// Scores each label against one image and returns them sorted high to low (stable for ties,
/// so equal scores keep the user's order).
pub fn rank(cal: &Calibration, image: &[f32], labels: &[(String, Vec<f32>)]) -> Vec<LabelScore> {
    let mut out: Vec<LabelScore> =
        labels.iter().map(|(label, emb)| LabelScore { label: label.clone(), score: cal.score(image, emb) }).collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Cosine similarity of two arbitrary vectors (used to compare precisions).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (na, nb) = (dot(a, a).sqrt(), dot(b, b).sqrt());
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot(a, b) / (na * nb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0, 0.0];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }

    #[test]
    fn score_is_sigmoid_of_scaled_cosine() {
        let cal = Calibration::from_log_scale(2.0f32.ln(), -1.0);
        // cos = 1 → sigmoid(2 - 1)
        let s = cal.score(&[1.0, 0.0], &[1.0, 0.0]);
        assert!((s - sigmoid(1.0)).abs() < 1e-6);
        // orthogonal → sigmoid(bias)
        let s = cal.score(&[1.0, 0.0], &[0.0, 1.0]);
        assert!((s - sigmoid(-1.0)).abs() < 1e-6);
    }

    #[test]
    fn labels_are_independent_and_sorted() {
        let cal = Calibration::from_log_scale(10f32.ln(), 0.0);
        let a = ("a".to_string(), vec![1.0, 0.0]);
        let b = ("b".to_string(), vec![0.0, 1.0]);
        let img = [0.6, 0.8];
        let both = rank(&cal, &img, &[a.clone(), b.clone()]);
        assert_eq!(both[0].label, "b");
        let alone = rank(&cal, &img, &[a]);
        // no softmax: a's score does not change when b is removed
        assert_eq!(alone[0].score, both[1].score);
        // both can be high at once
        assert!(both[0].score > 0.99 && both[1].score > 0.99);
    }
}
