//! Fitting a label to marked examples: L2-regularised logistic regression on a few features
//! the daemon already has, with leave-one-out estimates when examples are few.
//!
//! The model is scikit-learn's `LogisticRegression(penalty="l2", C=c)`: it minimises
//! `½‖w‖² + C · Σᵢ log(1 + exp(−yᵢ (w·xᵢ + b)))` with the intercept `b` not penalised. With
//! a handful of features (zero-shot logit, cosine to the mean positive and to the mean negative
//! example) the exact optimum is reached by Newton's method in a few steps; the fixture
//! `tests/fixtures/golden/logreg.json` (written by `tools/make_logreg_fixture.py` with
//! scikit-learn) holds this to the reference. Why logistic regression: it outputs a
//! probability (so thresholds keep their meaning), it is convex (one answer, no seed), and the
//! L2 penalty keeps it sane with 3 positives and 3 negatives; why leave-one-out: with a dozen
//! examples it is the only honest error estimate that uses them all.
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum FitError {
    #[error("need at least {min} positive and {min} negative examples (have {pos} and {neg})")]
    TooFew { min: usize, pos: usize, neg: usize },
    #[error("examples have {got} features, expected {want}")]
    Shape { got: usize, want: usize },
    #[error("a feature is not a finite number")]
    NotFinite,
}

/// A fitted model: `p(x) = σ(w·x + b)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fit {
    pub weights: Vec<f64>,
    pub intercept: f64,
}

impl Fit {
    pub fn probability(&self, x: &[f64]) -> f64 {
        sigmoid(self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>() + self.intercept)
    }
}

/// Inverse regularisation strength, as scikit-learn's `C` (its default: 1).
pub const DEFAULT_C: f64 = 1.0;
/// Fewest positives and fewest negatives before anything is fitted.
pub const MIN_PER_CLASS: usize = 3;

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `½‖w‖² + C Σ log(1 + exp(−s·z))`, `s = ±1`, computed without overflow.
fn objective(x: &[Vec<f64>], y: &[bool], w: &[f64], b: f64, c: f64) -> f64 {
    let reg: f64 = 0.5 * w.iter().map(|v| v * v).sum::<f64>();
    let loss: f64 = x
        .iter()
        .zip(y)
        .map(|(xi, &yi)| {
            let z = w.iter().zip(xi).map(|(a, v)| a * v).sum::<f64>() + b;
            let m = if yi { z } else { -z };
            // log(1 + e^-m), stable for both signs
            if m > 0.0 {
                (-m).exp().ln_1p()
            } else {
                -m + m.exp().ln_1p()
            }
        })
        .sum();
    reg + c * loss
}

/// Solves `a·d = g` for a small symmetric positive-definite `a` (Cholesky).
fn solve_spd(mut a: Vec<Vec<f64>>, g: &[f64]) -> Vec<f64> {
    let n = g.len();
    for j in 0..n {
        let d = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
        a[j][j] = d.max(1e-300).sqrt();
        for i in j + 1..n {
            a[i][j] = (a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>()) / a[j][j];
        }
    }
    let mut z = vec![0.0; n];
    for i in 0..n {
        z[i] = (g[i] - (0..i).map(|k| a[i][k] * z[k]).sum::<f64>()) / a[i][i];
    }
    let mut d = vec![0.0; n];
    for i in (0..n).rev() {
        d[i] = (z[i] - (i + 1..n).map(|k| a[k][i] * d[k]).sum::<f64>()) / a[i][i];
    }
    d
}

/// Fits `x` (rows of equal length) to `y` with inverse regularisation `c`; at least
/// [`MIN_PER_CLASS`] examples of each class.
pub fn fit(x: &[Vec<f64>], y: &[bool], c: f64) -> Result<Fit, FitError> {
    fit_min(x, y, c, MIN_PER_CLASS)
}

fn fit_min(x: &[Vec<f64>], y: &[bool], c: f64, min: usize) -> Result<Fit, FitError> {
    let pos = y.iter().filter(|v| **v).count();
    let neg = y.len() - pos;
    if pos < min || neg < min {
        return Err(FitError::TooFew { min, pos, neg });
    }
    let dim = x[0].len();
    if let Some(r) = x.iter().find(|r| r.len() != dim) {
        return Err(FitError::Shape { got: r.len(), want: dim });
    }
    if x.iter().flatten().any(|v| !v.is_finite()) {
        return Err(FitError::NotFinite);
    }
    // parameters θ = (w, b); Newton steps with backtracking on the convex objective
    let n = dim + 1;
    let mut theta = vec![0.0; n];
    for _ in 0..100 {
        let (w, b) = (&theta[..dim], theta[dim]);
        let mut grad = vec![0.0; n];
        let mut hess = vec![vec![0.0; n]; n];
        for i in 0..dim {
            grad[i] = w[i];
            hess[i][i] = 1.0;
        }
        for (xi, &yi) in x.iter().zip(y) {
            let p = sigmoid(w.iter().zip(xi).map(|(a, v)| a * v).sum::<f64>() + b);
            let r = c * (p - f64::from(u8::from(yi)));
            let s = c * p * (1.0 - p);
            let row = |k: usize| if k < dim { xi[k] } else { 1.0 };
            for (k, (g, h)) in grad.iter_mut().zip(hess.iter_mut()).enumerate() {
                *g += r * row(k);
                for (l, v) in h.iter_mut().enumerate() {
                    *v += s * row(k) * row(l);
                }
            }
        }
        if grad.iter().map(|g| g.abs()).fold(0.0, f64::max) < 1e-10 {
            break;
        }
        let step = solve_spd(hess, &grad);
        let before = objective(x, y, &theta[..dim], theta[dim], c);
        let mut t = 1.0;
        loop {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(a, d)| a - t * d).collect();
            if objective(x, y, &cand[..dim], cand[dim], c) <= before || t < 1e-8 {
                theta = cand;
                break;
            }
            t *= 0.5;
        }
    }
    Ok(Fit { weights: theta[..dim].to_vec(), intercept: theta[dim] })
}

/// A fit on standardized features: scikit-learn's
/// `make_pipeline(StandardScaler(), LogisticRegression(C=c))`. Standardizing makes the penalty
/// treat every feature alike whatever its spread: cosines between image embeddings of one
/// model often differ by hundredths, where unscaled weights of hundreds would be penalized
/// into a flat 0.5.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScaledFit {
    /// Per feature: the training mean and the population standard deviation (1 for a
    /// constant feature, as scikit-learn's `StandardScaler`).
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// The model on `(x − mean) / scale`.
    pub fit: Fit,
}

impl ScaledFit {
    pub fn probability(&self, x: &[f64]) -> f64 {
        self.fit.probability(&self.standardize(x))
    }

    fn standardize(&self, x: &[f64]) -> Vec<f64> {
        x.iter().zip(&self.mean).zip(&self.scale).map(|((v, m), s)| (v - m) / s).collect()
    }
}

/// Standardizes `x`, then [`fit`]s: at least [`MIN_PER_CLASS`] examples of each class.
pub fn fit_scaled(x: &[Vec<f64>], y: &[bool], c: f64) -> Result<ScaledFit, FitError> {
    fit_scaled_min(x, y, c, MIN_PER_CLASS)
}

fn fit_scaled_min(x: &[Vec<f64>], y: &[bool], c: f64, min: usize) -> Result<ScaledFit, FitError> {
    let dim = x.first().map_or(0, Vec::len);
    if let Some(r) = x.iter().find(|r| r.len() != dim) {
        return Err(FitError::Shape { got: r.len(), want: dim });
    }
    let n = x.len().max(1) as f64;
    let mean: Vec<f64> = (0..dim).map(|k| x.iter().map(|r| r[k]).sum::<f64>() / n).collect();
    let scale = (0..dim)
        .map(|k| {
            let var = x.iter().map(|r| (r[k] - mean[k]).powi(2)).sum::<f64>() / n;
            // scikit-learn's test for a constant feature (sklearn/preprocessing/_data.py,
            // `_is_constant_feature`): the variance is within float error of zero
            let eps = f64::EPSILON;
            let constant = var <= n * eps * var + (n * mean[k] * eps).powi(2);
            if constant {
                1.0
            } else {
                var.sqrt()
            }
        })
        .collect();
    let mut s = ScaledFit { mean, scale, fit: Fit { weights: vec![], intercept: 0.0 } };
    let z: Vec<Vec<f64>> = x.iter().map(|r| s.standardize(r)).collect();
    s.fit = fit_min(&z, y, c, min)?;
    Ok(s)
}

/// Leave-one-out probabilities of [`fit_scaled`]: example `i` scored by a model fitted (and
/// standardized) without it (so with [`MIN_PER_CLASS`] of each class, a fold trains on one
/// fewer; the L2 penalty keeps that sane). `features(i, held)` builds example `i`'s features
/// in the fold that leaves out `held` (the mean positive and negative embeddings must not
/// include the example being scored).
pub fn leave_one_out(y: &[bool], c: f64, features: impl Fn(usize, usize) -> Vec<f64>) -> Result<Vec<f64>, FitError> {
    (0..y.len())
        .map(|held| {
            let train: Vec<usize> = (0..y.len()).filter(|&i| i != held).collect();
            let xs: Vec<Vec<f64>> = train.iter().map(|&i| features(i, held)).collect();
            let ys: Vec<bool> = train.iter().map(|&i| y[i]).collect();
            Ok(fit_scaled_min(&xs, &ys, c, MIN_PER_CLASS - 1)?.probability(&features(held, held)))
        })
        .collect()
}

/// Precision and recall of "probability ≥ threshold" against the marks.
pub fn precision_recall(probs: &[f64], y: &[bool], threshold: f64) -> (f64, f64) {
    let tp = probs.iter().zip(y).filter(|(p, &t)| **p >= threshold && t).count() as f64;
    let fp = probs.iter().zip(y).filter(|(p, &t)| **p >= threshold && !t).count() as f64;
    let pos = y.iter().filter(|t| **t).count() as f64;
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 1.0 };
    let recall = if pos > 0.0 { tp / pos } else { 0.0 };
    (precision, recall)
}

/// The lowest threshold (most recall) whose precision on `probs` reaches `target`, or None.
pub fn threshold_for_precision(probs: &[f64], y: &[bool], target: f64) -> Option<f64> {
    let mut candidates: Vec<f64> = probs.to_vec();
    candidates.sort_by(f64::total_cmp);
    candidates.into_iter().find(|&t| precision_recall(probs, y, t).0 >= target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        c: f64,
        x: Vec<Vec<f64>>,
        y: Vec<u8>,
        coef: Vec<f64>,
        intercept: f64,
    }

    #[derive(serde::Deserialize)]
    struct Golden {
        sklearn_version: String,
        cases: Vec<Case>,
        #[serde(default)]
        scaled_cases: Vec<ScaledCase>,
    }

    #[derive(serde::Deserialize)]
    struct ScaledCase {
        c: f64,
        x: Vec<Vec<f64>>,
        y: Vec<u8>,
        mean: Vec<f64>,
        scale: Vec<f64>,
        proba: Vec<f64>,
    }

    /// Same scaler and probabilities as scikit-learn's StandardScaler + LogisticRegression.
    #[test]
    fn scaled_fits_match_scikit_learns_pipeline() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/logreg.json");
        let g: Golden = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(g.scaled_cases.len() >= 3, "the fixture has scaled cases");
        for (k, case) in g.scaled_cases.iter().enumerate() {
            let y: Vec<bool> = case.y.iter().map(|v| *v == 1).collect();
            let f = fit_scaled(&case.x, &y, case.c).unwrap();
            for (a, b) in f.mean.iter().zip(&case.mean).chain(f.scale.iter().zip(&case.scale)) {
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "case {k}: scaler {:?}/{:?} vs {:?}/{:?}",
                    f.mean,
                    f.scale,
                    case.mean,
                    case.scale
                );
            }
            for (x, want) in case.x.iter().zip(&case.proba) {
                let got = f.probability(x);
                assert!((got - want).abs() < 1e-6, "case {k}: p = {got} vs sklearn {want}");
            }
        }
    }

    /// Same optimum as scikit-learn's LogisticRegression on the fixture script's data.
    #[test]
    fn matches_scikit_learn() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/logreg.json");
        let g: Golden = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(!g.sklearn_version.is_empty());
        for (k, case) in g.cases.iter().enumerate() {
            let y: Vec<bool> = case.y.iter().map(|v| *v == 1).collect();
            let f = fit(&case.x, &y, case.c).unwrap();
            for (a, b) in f.weights.iter().zip(&case.coef) {
                assert!((a - b).abs() < 1e-4, "case {k}: {:?} vs sklearn {:?}", f.weights, case.coef);
            }
            assert!((f.intercept - case.intercept).abs() < 1e-4, "case {k}: {} vs {}", f.intercept, case.intercept);
        }
    }

    #[test]
    fn too_few_examples_fit_nothing() {
        let x = vec![vec![1.0], vec![2.0], vec![-1.0], vec![-2.0], vec![3.0]];
        let y = vec![true, true, false, false, true];
        assert_eq!(fit(&x, &y, 1.0), Err(FitError::TooFew { min: 3, pos: 3, neg: 2 }));
    }

    #[test]
    fn separable_data_stays_finite_and_ranks_correctly() {
        // negatives at −5..−1, positives at 1..5: a clear gap, so leave-one-out is perfect too
        let x: Vec<Vec<f64>> = (0..10).map(|i| vec![if i < 5 { i as f64 - 5.0 } else { i as f64 - 4.0 }]).collect();
        let y: Vec<bool> = (0..10).map(|i| i >= 5).collect();
        let f = fit(&x, &y, 1.0).unwrap();
        assert!(f.weights[0].is_finite() && f.weights[0] > 0.0);
        assert!(f.probability(&[3.0]) > 0.9 && f.probability(&[-3.0]) < 0.1);
        let loo = leave_one_out(&y, 1.0, |i, _| x[i].clone()).unwrap();
        assert_eq!(precision_recall(&loo, &y, 0.5), (1.0, 1.0));
        let t = threshold_for_precision(&loo, &y, 1.0).unwrap();
        assert!(t > 0.5, "{t}");
    }
}
