//! Marked examples ("this is ⟨label⟩" / "this is not ⟨label⟩") and what they say about a
//! label's threshold.
//!
//! An example is the image embedding of a scored frame (plus a small JPEG thumbnail for
//! review), per camera and label, in the state directory (`examples.json`, thumbnails under
//! `examples/`). Embeddings belong to one vision model: the file records the sha256 of the
//! vision tower that made them, and a store made with another model is refused with what to do.
//!
//! From the examples, [`suggest`] fits `calibrate`'s logistic regression on three features —
//! the zero-shot logit, the cosine to the mean positive and to the mean negative example (the
//! example itself left out) — and reports leave-one-out precision/recall, and, for the score
//! the daemon thresholds today (the zero-shot score), the lowest `on` threshold that reaches a
//! chosen precision on the marked examples and how many episodes it would have started over
//! the recorded history.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::calibrate::{self, FitError};
use crate::classify::{dot, sigmoid, Calibration};
use crate::state::{StateDir, StateError};

pub const FILE: &str = "examples.json";
const FORMAT: &str = "siglipd-examples";
const VERSION: u32 = 1;
/// Examples kept per camera and label: marking is by hand, this is far beyond that.
pub const MAX_PER_LABEL: usize = 500;

#[derive(Debug, Error)]
pub enum ExampleError {
    #[error("the examples in {path} were recorded with another vision model (sha256 {theirs}, running {ours}): delete them (DELETE /api/cameras/<id>/examples/<n>, or remove the file) and mark frames again")]
    OtherModel { path: PathBuf, theirs: String, ours: String },
    #[error("no state directory: examples cannot be kept (see the log for why; set [state] dir)")]
    NoStateDir,
    #[error("camera {camera:?} has {count} examples of {label:?}, at most {MAX_PER_LABEL}")]
    Full { camera: String, label: String, count: usize },
    #[error(transparent)]
    Write(#[from] StateError),
    #[error("cannot write thumbnail {path}: {cause}")]
    Thumbnail { path: PathBuf, cause: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub id: u64,
    pub positive: bool,
    /// Unix seconds.
    pub created: f64,
    /// Unit-length image embedding.
    pub embedding: Vec<f32>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    vision_sha256: String,
    next_id: u64,
    /// camera → label slug → examples
    cameras: BTreeMap<String, BTreeMap<String, Vec<Example>>>,
}

/// The examples of every camera, loaded once and written through on every change.
pub struct ExampleStore {
    state: Option<StateDir>,
    stored: Stored,
    /// Why the stored examples cannot be used (another model), if so.
    stale: Option<ExampleError>,
}

impl ExampleStore {
    /// Loads `examples.json` from `state` for the vision model with `vision_sha256`.
    pub fn load(state: Option<StateDir>, vision_sha256: &str) -> Self {
        let stored: Option<Stored> = state.as_ref().and_then(|s| s.read(FILE, FORMAT, VERSION));
        let mut stale = None;
        let stored = match stored {
            Some(s) if s.vision_sha256 != vision_sha256 && s.cameras.values().any(|c| c.values().any(|v| !v.is_empty())) => {
                stale = Some(ExampleError::OtherModel {
                    path: state.as_ref().map(|s| s.path().join(FILE)).unwrap_or_default(),
                    theirs: s.vision_sha256.clone(),
                    ours: vision_sha256.into(),
                });
                s
            }
            Some(s) => Stored { vision_sha256: vision_sha256.into(), ..s },
            None => Stored { vision_sha256: vision_sha256.into(), ..Default::default() },
        };
        Self { state, stored, stale }
    }

    fn usable(&self) -> Result<&StateDir, ExampleError> {
        if let Some(e) = &self.stale {
            return Err(match e {
                ExampleError::OtherModel { path, theirs, ours } => {
                    ExampleError::OtherModel { path: path.clone(), theirs: theirs.clone(), ours: ours.clone() }
                }
                _ => ExampleError::NoStateDir,
            });
        }
        self.state.as_ref().ok_or(ExampleError::NoStateDir)
    }

    /// The examples of one label (empty when none, or when they belong to another model).
    pub fn list(&self, camera: &str, label: &str) -> Result<Vec<Example>, ExampleError> {
        self.usable()?;
        Ok(self.stored.cameras.get(camera).and_then(|c| c.get(label)).cloned().unwrap_or_default())
    }

    /// Adds an example (and its JPEG thumbnail, if any); returns its id.
    pub fn add(
        &mut self,
        camera: &str,
        label: &str,
        positive: bool,
        embedding: Vec<f32>,
        created: f64,
        thumbnail: Option<&[u8]>,
    ) -> Result<u64, ExampleError> {
        let state = self.usable()?.clone();
        let list = self.stored.cameras.entry(camera.into()).or_default().entry(label.into()).or_default();
        if list.len() >= MAX_PER_LABEL {
            return Err(ExampleError::Full { camera: camera.into(), label: label.into(), count: list.len() });
        }
        let id = self.stored.next_id;
        self.stored.next_id += 1;
        if let Some(jpeg) = thumbnail {
            let dir = state.path().join("examples");
            let path = dir.join(format!("{id}.jpg"));
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, jpeg))
                .map_err(|cause| ExampleError::Thumbnail { path: path.clone(), cause })?;
        }
        list.push(Example { id, positive, created, embedding });
        state.write(FILE, FORMAT, VERSION, &self.stored)?;
        Ok(id)
    }

    /// Removes an example; false if there is none with that id.
    pub fn remove(&mut self, camera: &str, id: u64) -> Result<bool, ExampleError> {
        let state = self.usable()?.clone();
        let Some(cam) = self.stored.cameras.get_mut(camera) else { return Ok(false) };
        let before: usize = cam.values().map(Vec::len).sum();
        cam.values_mut().for_each(|v| v.retain(|e| e.id != id));
        if cam.values().map(Vec::len).sum::<usize>() == before {
            return Ok(false);
        }
        let _ = std::fs::remove_file(state.path().join("examples").join(format!("{id}.jpg")));
        state.write(FILE, FORMAT, VERSION, &self.stored)?;
        Ok(true)
    }

    /// The thumbnail of an example, if it has one.
    pub fn thumbnail(&self, id: u64) -> Option<Vec<u8>> {
        std::fs::read(self.state.as_ref()?.path().join("examples").join(format!("{id}.jpg"))).ok()
    }
}

/// What the marked examples say about a label.
#[derive(Debug, Serialize)]
pub struct Suggestion {
    pub positives: usize,
    pub negatives: usize,
    /// False until there are `calibrate::MIN_PER_CLASS` of each: then nothing is suggested.
    pub enough: bool,
    /// The fitted model's leave-one-out precision and recall at probability 0.5.
    pub loo_precision: Option<f64>,
    pub loo_recall: Option<f64>,
    /// The precision asked for.
    pub target_precision: f64,
    /// The lowest zero-shot `on` threshold reaching the target on the examples, and `off`
    /// at the configured gap below it.
    pub on: Option<f32>,
    pub off: Option<f32>,
    /// Precision and recall of that threshold on the examples.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// ON episodes that threshold would have started over the recorded history (hysteresis
    /// on the raw score, no smoothing), against what the current thresholds started.
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

/// Fits and suggests (see the module docs). `label` is the label's text embedding (unit),
/// `gap` the configured `on − off`, `history` its raw scores oldest first, `current` the
/// thresholds in force.
pub fn suggest(
    examples: &[Example],
    label: &[f32],
    cal: &Calibration,
    gap: f32,
    target_precision: f64,
    history: &[f32],
    current: (f32, f32),
) -> Result<Suggestion, FitError> {
    let y: Vec<bool> = examples.iter().map(|e| e.positive).collect();
    let positives = y.iter().filter(|p| **p).count();
    let negatives = y.len() - positives;
    let enough = positives >= calibrate::MIN_PER_CLASS && negatives >= calibrate::MIN_PER_CLASS;
    let mut s = Suggestion {
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
        current_history_episodes: episodes(history, current.0, current.1),
    };
    if !enough {
        return Ok(s);
    }
    let mean = |idx: &[usize], positive: bool| -> Vec<f32> {
        let mut m = vec![0f32; label.len()];
        for &i in idx.iter().filter(|&&i| examples[i].positive == positive) {
            m.iter_mut().zip(&examples[i].embedding).for_each(|(a, b)| *a += b);
        }
        crate::classify::l2_normalize(&mut m);
        m
    };
    let features = |i: usize, train: &[usize]| -> Vec<f64> {
        let e = &examples[i].embedding;
        vec![(dot(e, label) * cal.scale + cal.bias) as f64, dot(e, &mean(train, true)) as f64, dot(e, &mean(train, false)) as f64]
    };
    let loo = calibrate::leave_one_out(&y, calibrate::DEFAULT_C, features)?;
    let (p, r) = calibrate::precision_recall(&loo, &y, 0.5);
    s.loo_precision = Some(p);
    s.loo_recall = Some(r);
    let zero_shot: Vec<f64> = examples.iter().map(|e| sigmoid(dot(&e.embedding, label) * cal.scale + cal.bias) as f64).collect();
    if let Some(t) = calibrate::threshold_for_precision(&zero_shot, &y, target_precision) {
        let (p, r) = calibrate::precision_recall(&zero_shot, &y, t);
        let on = t as f32;
        let off = (on - gap).max(0.0);
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
        crate::classify::l2_normalize(&mut v);
        v
    }

    #[test]
    fn examples_persist_and_belong_to_one_model() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(d.path()).unwrap();
        let mut s = ExampleStore::load(Some(state.clone()), "aaa");
        let id = s.add("door", "cat", true, unit(&[1.0, 0.0]), 10.0, Some(b"\xFF\xD8jpeg")).unwrap();
        s.add("door", "cat", false, unit(&[0.0, 1.0]), 11.0, None).unwrap();
        assert_eq!(s.thumbnail(id).as_deref(), Some(&b"\xFF\xD8jpeg"[..]));
        // survives a restart with the same model
        let again = ExampleStore::load(Some(state.clone()), "aaa");
        assert_eq!(again.list("door", "cat").unwrap().len(), 2);
        // another model: refused with what to do, nothing silently mixed
        let other = ExampleStore::load(Some(state.clone()), "bbb");
        let e = other.list("door", "cat").unwrap_err().to_string();
        assert!(e.contains("another vision model") && e.contains("mark frames again"), "{e}");
        // deleting
        let mut again = again;
        assert!(again.remove("door", id).unwrap());
        assert!(!again.remove("door", id).unwrap());
        assert_eq!(again.list("door", "cat").unwrap().len(), 1);
        assert!(again.thumbnail(id).is_none());
    }

    #[test]
    fn hysteresis_episodes() {
        assert_eq!(episodes(&[0.1, 0.6, 0.55, 0.45, 0.6, 0.3, 0.7], 0.5, 0.4), 2);
        assert_eq!(episodes(&[], 0.5, 0.4), 0);
    }

    #[test]
    fn suggestions_need_enough_examples_and_find_the_separating_threshold() {
        let cal = Calibration::from_log_scale(10f32.ln(), -5.0);
        let label = unit(&[1.0, 0.0, 0.0]);
        let ex = |id, pos, v: &[f32]| Example { id, positive: pos, created: 0.0, embedding: unit(v) };
        // positives point close to the label, negatives away from it
        let mut examples = vec![ex(0, true, &[1.0, 0.1, 0.0]), ex(1, true, &[1.0, 0.0, 0.2]), ex(2, false, &[0.2, 1.0, 0.0])];
        let s = suggest(&examples, &label, &cal, 0.1, 0.9, &[], (0.5, 0.4)).unwrap();
        assert!(!s.enough && s.on.is_none(), "2 positives, 1 negative: nothing yet");
        examples.extend([ex(3, true, &[1.0, 0.2, 0.1]), ex(4, false, &[0.3, 0.0, 1.0]), ex(5, false, &[0.1, 1.0, 1.0])]);
        let history = [0.1f32, 0.2, 0.99, 0.98, 0.1, 0.97, 0.1];
        let s = suggest(&examples, &label, &cal, 0.1, 1.0, &history, (0.5, 0.4)).unwrap();
        assert!(s.enough);
        assert_eq!((s.precision, s.recall), (Some(1.0), Some(1.0)), "{s:?}");
        let on = s.on.unwrap();
        let lowest_positive = examples
            .iter()
            .filter(|e| e.positive)
            .map(|e| sigmoid(dot(&e.embedding, &label) * cal.scale + cal.bias))
            .fold(1.0, f32::min);
        assert!((on - lowest_positive).abs() < 1e-6, "the lowest threshold that keeps every negative out: {on} vs {lowest_positive}");
        assert!((s.off.unwrap() - (on - 0.1)).abs() < 1e-6);
        assert_eq!(s.loo_precision, Some(1.0));
        assert!(s.history_episodes.is_some());
    }
}
