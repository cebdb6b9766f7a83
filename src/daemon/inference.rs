//! The inference thread: takes the next camera's latest frame, scores it, decides ON/OFF and
//! hands results to the sinks. Never waits on a sink, a source or the web server.
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use tracing::{debug, info, warn};

use super::schedule::{falling_behind, Scheduler, WallClock};
use super::{label_score, mean_abs_diff, snapshot_jpeg, thumbnail};
use crate::config::{CameraConfig, ScoreKind};
use crate::control::Controls;
use crate::decide::{Change, EventKind, LabelState};
use crate::embeddings::LabelEmbedding;
use crate::engine::Engine;
use crate::live::{Live, LiveCamera};
use crate::model::preprocess;
use crate::sink::Sinks;
use crate::sink::{EventMsg, Output, StateMsg, TopLabel};
use crate::source::{Frame, Payload, Slot};

/// After this many frames in a row that could not be scored, the camera is reported
/// `offline` (status topic, `/healthz`, live view) until one is scored again.
pub const FAILING_AFTER: u32 = 3;

pub struct CameraRun {
    pub cfg: CameraConfig,
    pub slot: Arc<Slot>,
    pub labels: Vec<LabelEmbedding>,
    pub states: Vec<LabelState>,
    pub last_thumb: Option<Vec<u8>>,
    pub last_run: Option<Instant>,
    /// What the web page and /metrics see; counters live there.
    pub live: Arc<LiveCamera>,
    /// Kinds of failure already logged (further ones are counted only).
    pub error_kinds_seen: HashSet<&'static str>,
    pub published_initial: bool,
    pub consecutive_failures: u32,
    /// The pause was applied (labels turned OFF) and not yet lifted.
    pub paused: bool,
    pub warned_behind: bool,
}

impl CameraRun {
    pub fn new(cfg: &CameraConfig, slot: Arc<Slot>, labels: Vec<LabelEmbedding>, live: Arc<LiveCamera>) -> Self {
        Self {
            states: cfg.labels.iter().map(|l| LabelState::new(cfg.smoothing, l.hold, l.cooldown)).collect(),
            cfg: cfg.clone(),
            slot,
            labels,
            last_thumb: None,
            last_run: None,
            live,
            error_kinds_seen: HashSet::new(),
            published_initial: false,
            consecutive_failures: 0,
            paused: false,
            warned_behind: false,
        }
    }
}

/// A scored frame: label scores, the decoded frame, each crop region's image embedding.
type Scored = (Vec<LabelScores>, RgbImage, Vec<Vec<f32>>);

/// One label's scores on a frame (with crop regions: the best region of each).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LabelScores {
    /// The zero-shot score (labels with prompts).
    pub raw: Option<f32>,
    /// The probability of the label's model fitted on marked examples, if it has one.
    pub calibrated: Option<f32>,
}

impl LabelScores {
    /// The score the label's thresholds apply to: a calibrated label uses its zero-shot score
    /// until it has a fit; a label from examples alone has none until then.
    pub fn used(&self, kind: ScoreKind) -> Option<f32> {
        match kind {
            ScoreKind::ZeroShot => self.raw,
            ScoreKind::Calibrated => self.calibrated.or(self.raw),
            ScoreKind::Examples => self.calibrated,
        }
    }

    fn max(self, other: Self) -> Self {
        let m = |a: Option<f32>, b: Option<f32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Self { raw: m(self.raw, other.raw), calibrated: m(self.calibrated, other.calibrated) }
    }
}

/// Why a frame was not scored.
enum Skip {
    Failed { kind: &'static str, message: String },
    Unchanged,
}

pub struct Inference {
    pub engine: Engine,
    pub cams: Vec<CameraRun>,
    pub bell: Arc<crate::source::Doorbell>,
    pub shutdown: Arc<AtomicBool>,
    pub sinks: Sinks,
    pub controls: Arc<Controls>,
    pub snapshots: bool,
    pub pixels: Vec<f32>,
    pub live: Arc<Live>,
    /// Uploads from the web page, run between frames.
    pub jobs: Option<Receiver<crate::http::Job>>,
    pub clock: WallClock,
}

impl Inference {
    /// Runs until shutdown; gives the engine back (a reload with the same model reuses it).
    pub fn run(mut self) -> Engine {
        let intervals: Vec<Duration> = self.cams.iter().map(|c| c.cfg.interval).collect();
        let mut sched = Scheduler::new(&intervals, Instant::now());
        let mut last_report = Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            self.live.beat();
            // at most one upload per turn, so the page cannot starve the cameras
            if let Some(job) = self.jobs.as_ref().and_then(|rx| rx.try_recv().ok()) {
                job.run(&mut self.engine);
            }
            self.apply_pauses();
            self.sync_drop_counters();
            let now = Instant::now();
            match sched.next(now, |i| self.cams[i].slot.has_frame()) {
                Some(i) => {
                    let lag = sched.served(i, now);
                    self.record_pace(i, lag, now);
                    self.step(i);
                }
                None => {
                    let wait = sched
                        .next_due()
                        .map(|d| d.saturating_duration_since(now))
                        .filter(|d| !d.is_zero())
                        .unwrap_or(Duration::from_millis(200))
                        .min(Duration::from_millis(200));
                    self.bell.wait(wait);
                }
            }
            if last_report.elapsed() >= Duration::from_secs(60) {
                last_report = Instant::now();
                self.log_counters();
            }
        }
        debug!("inference thread stopped");
        self.engine
    }

    fn log_counters(&self) {
        for c in &self.cams {
            let n = &c.live.counters;
            let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            info!(camera = %c.cfg.id, processed = ld(&n.processed), unchanged = ld(&n.unchanged),
                failed = ld(&n.failed), paused = ld(&n.paused), stale_dropped = ld(&c.slot.dropped),
                rate_fps = format!("{:.2}", c.live.pace.rate_fps()), "camera counters");
        }
    }

    /// Every camera's replaced-frame count reaches `/metrics`, scored this turn or not.
    fn sync_drop_counters(&self) {
        for c in &self.cams {
            c.live.counters.dropped.store(c.slot.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    fn record_pace(&mut self, i: usize, lag: Duration, now: Instant) {
        let cam = &mut self.cams[i];
        cam.live.pace.record(lag, cam.last_run.map(|t| now.saturating_duration_since(t)));
        if !cam.warned_behind && falling_behind(lag, cam.cfg.interval) {
            cam.warned_behind = true;
            warn!(
                camera = %cam.cfg.id,
                lag_s = format!("{:.1}", lag.as_secs_f64()),
                "cannot keep up with this camera's interval_s ({:.2} s): frames are scored late and cameras share the model in proportion to their rates; see siglipd_camera_rate_fps in /metrics (warned once)",
                cam.cfg.interval.as_secs_f64()
            );
        }
    }

    /// A camera paused since the last turn turns its ON labels OFF now (documented in the
    /// README): automations waiting for OFF fire, and nothing stays ON while nobody looks.
    fn apply_pauses(&mut self) {
        for i in 0..self.cams.len() {
            let enabled = self.controls.cameras[i].enabled();
            let cam = &mut self.cams[i];
            if enabled || cam.paused {
                cam.paused = !enabled && cam.paused;
                continue;
            }
            cam.paused = true;
            let now = Instant::now();
            let wall = self.clock.now();
            for j in 0..cam.states.len() {
                let change = cam.states[j].pause(now, wall);
                publish_change(&self.sinks, cam, j, &change, Some("paused"));
                if change.state.is_none() && !cam.published_initial {
                    // paused from the start: a retained ON from an earlier run is replaced
                    let label = cam.cfg.labels[j].slug.clone();
                    self.sinks.send(Output::Label { camera: cam.cfg.id.clone(), label, on: false });
                }
            }
            cam.published_initial = true;
            cam.live.set_all_off();
            info!(camera = %cam.cfg.id, "camera paused: its labels are OFF until it is enabled again");
        }
    }

    fn step(&mut self, i: usize) {
        let Some(frame) = self.cams[i].slot.take() else {
            return;
        };
        if !self.controls.cameras[i].enabled() {
            self.cams[i].live.counters.paused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let started = Instant::now();
        match self.score(i, &frame) {
            Ok((scores, img, embeddings)) => {
                self.note_success(i);
                self.publish(i, &scores, started.elapsed(), frame, &img, embeddings);
            }
            Err(Skip::Unchanged) => {
                self.cams[i].live.counters.unchanged.fetch_add(1, Ordering::Relaxed);
            }
            Err(Skip::Failed { kind, message }) => self.note_failure(i, kind, &message),
        }
    }

    /// Decode → change gate → each crop region through the vision tower → label scores.
    /// Returns the label scores, the decoded frame and each region's image embedding.
    fn score(&mut self, i: usize, frame: &Frame) -> Result<Scored, Skip> {
        let cam = &mut self.cams[i];
        let img = match &frame.payload {
            Payload::Encoded(bytes) => preprocess::decode(bytes, &frame.origin, self.engine.pre.max_pixels)
                .map_err(|e| Skip::Failed { kind: e.kind(), message: e.to_string() })?,
            Payload::Rgb(img) => img.clone(),
        };
        let now = Instant::now();
        if let Some(gate) = cam.cfg.change_gate {
            let thumb = thumbnail(&img);
            let forced = cam.last_run.is_none_or(|t| now.duration_since(t) >= gate.force_every);
            if let (Some(prev), false) = (&cam.last_thumb, forced) {
                if mean_abs_diff(prev, &thumb) < gate.threshold {
                    return Err(Skip::Unchanged);
                }
            }
            cam.last_thumb = Some(thumb);
        }
        let cal = self.engine.calibration;
        let fits = cam.live.fits();
        let mut scores = vec![LabelScores::default(); cam.labels.len()];
        let whole = [[0.0, 0.0, 1.0, 1.0]];
        let regions: &[[f64; 4]] = if cam.cfg.crops.is_empty() { &whole } else { &cam.cfg.crops };
        let mut embeddings = Vec::with_capacity(regions.len());
        for r in regions {
            let part;
            let view = if cam.cfg.crops.is_empty() {
                &img
            } else {
                part = preprocess::crop_region(&img, r);
                &part
            };
            self.engine.pre.pixels_into(view, &mut self.pixels);
            let emb =
                self.engine.vision.embed(&self.pixels).map_err(|e| Skip::Failed { kind: "inference", message: e.to_string() })?;
            // with several regions, a label is as present as in its best region
            for ((s, l), fit) in scores.iter_mut().zip(&cam.labels).zip(&fits) {
                let here = LabelScores {
                    raw: l.has_text().then(|| label_score(&cal, &emb, l)),
                    calibrated: fit.as_ref().map(|f| f.probability(&emb)),
                };
                *s = s.max(here);
            }
            embeddings.push(emb);
        }
        cam.last_run = Some(now);
        Ok((scores, img, embeddings))
    }

    fn note_success(&mut self, i: usize) {
        let cam = &mut self.cams[i];
        cam.live.counters.processed.fetch_add(1, Ordering::Relaxed);
        if cam.consecutive_failures >= FAILING_AFTER {
            info!(camera = %cam.cfg.id, "frames are scored again");
        }
        cam.consecutive_failures = 0;
        if let Some(online) = cam.live.set_failing(None) {
            self.sinks.send(Output::Status { camera: cam.cfg.id.clone(), online });
        }
    }

    /// Counts the failure, logs each kind once per camera, and after [`FAILING_AFTER`] in a
    /// row reports the camera offline.
    fn note_failure(&mut self, i: usize, kind: &'static str, message: &str) {
        let cam = &mut self.cams[i];
        cam.live.counters.failed.fetch_add(1, Ordering::Relaxed);
        cam.consecutive_failures += 1;
        if cam.error_kinds_seen.insert(kind) {
            warn!(camera = %cam.cfg.id, kind, "skipping frame: {message} (further {kind} failures of this camera are only counted)");
        } else {
            debug!(camera = %cam.cfg.id, kind, "skipping frame: {message}");
        }
        if cam.consecutive_failures == FAILING_AFTER {
            warn!(camera = %cam.cfg.id, "the last {FAILING_AFTER} frames could not be scored: reporting the camera offline until one can");
        }
        if cam.consecutive_failures >= FAILING_AFTER {
            if let Some(online) = cam.live.set_failing(Some(message.to_string())) {
                self.sinks.send(Output::Status { camera: cam.cfg.id.clone(), online });
            }
        }
    }

    fn publish(&mut self, i: usize, scores: &[LabelScores], infer: Duration, frame: Frame, img: &RgbImage, embeddings: Vec<Vec<f32>>) {
        let wall = self.clock.now();
        let ctrl = &self.controls.cameras[i];
        let cam = &mut self.cams[i];
        self.live.inference_seconds.observe(infer.as_secs_f64());
        let infer_ms = infer.as_secs_f64() * 1000.0;
        let state = Arc::new(state_msg(&cam.cfg, scores, wall, infer_ms));
        debug!(camera = %cam.cfg.id, infer_ms, frame = %frame.origin, "frame scored");
        self.sinks.send(Output::State { camera: cam.cfg.id.clone(), state: state.clone() });
        let now = Instant::now();
        let mut history = cam.live.history.lock().unwrap();
        for (j, s) in scores.iter().enumerate() {
            // no score yet (a label from examples alone, not enough of them): it stays OFF
            let score = s.used(cam.cfg.labels[j].score).unwrap_or(0.0);
            let (smoothed, change) = cam.states[j].update(score, ctrl.thresholds(j), now, wall);
            let on = cam.states[j].is_on();
            history[j].push(crate::history::Point { t: wall, raw: score, smoothed, on, n: 1 });
            if !cam.published_initial && change.state.is_none() {
                self.sinks.send(Output::Label { camera: cam.cfg.id.clone(), label: cam.cfg.labels[j].slug.clone(), on });
            }
            publish_change(&self.sinks, cam, j, &change, None);
            if change.state == Some(true) && self.snapshots {
                if let Some(jpeg) = snapshot_jpeg(&frame.payload, img) {
                    self.sinks.send(Output::Snapshot { camera: cam.cfg.id.clone(), label: cam.cfg.labels[j].slug.clone(), jpeg });
                }
            }
        }
        drop(history);
        cam.published_initial = true;
        // moved, not copied: the web server encodes it only if someone looks
        cam.live.update(state, cam.states.iter().map(LabelState::is_on).collect(), frame.payload, embeddings);
    }
}

fn state_msg(cfg: &CameraConfig, scores: &[LabelScores], wall: f64, infer_ms: f64) -> StateMsg {
    let used: Vec<(usize, f32)> = scores.iter().enumerate().filter_map(|(j, s)| Some((j, s.used(cfg.labels[j].score)?))).collect();
    let mut ranked = used.clone();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let by_name = |pick: &dyn Fn(&LabelScores) -> Option<f32>| {
        cfg.labels.iter().zip(scores).filter_map(|(l, s)| Some((l.name.clone(), pick(s)?))).collect()
    };
    let fitted = scores.iter().any(|s| s.calibrated.is_some());
    StateMsg {
        ts: wall,
        top: ranked.iter().take(cfg.top_k).map(|(j, s)| TopLabel { label: cfg.labels[*j].name.clone(), score: *s }).collect(),
        scores: used.iter().map(|(j, s)| (cfg.labels[*j].name.clone(), *s)).collect(),
        raw: if fitted { by_name(&|s| s.raw) } else { Default::default() },
        calibrated: by_name(&|s| s.calibrated),
        infer_ms: (infer_ms * 10.0).round() / 10.0,
    }
}

/// Publishes what one label's update changed: its ON/OFF topic and its event.
fn publish_change(sinks: &Sinks, cam: &CameraRun, j: usize, change: &Change, reason: Option<&str>) {
    let l = &cam.cfg.labels[j];
    if let Some(on) = change.state {
        sinks.send(Output::Label { camera: cam.cfg.id.clone(), label: l.slug.clone(), on });
    }
    let Some(ev) = &change.event else { return };
    match ev.kind {
        EventKind::New => {
            info!(camera = %cam.cfg.id, label = %l.name, score = ev.score, "label ON")
        }
        EventKind::End => info!(camera = %cam.cfg.id, label = %l.name, "label OFF"),
        EventKind::Update => {}
    }
    sinks.send(Output::Event(EventMsg {
        kind: ev.kind.as_str().into(),
        id: format!("{:.3}-{}-{}", ev.start_time, cam.cfg.id, l.slug),
        camera: cam.cfg.id.clone(),
        label: l.name.clone(),
        score: ev.score,
        top_score: ev.top_score,
        start_time: ev.start_time,
        end_time: ev.end_time,
        reason: reason.map(str::to_string),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_label_is_decided_on_the_score_it_names() {
        let zs = LabelScores { raw: Some(0.2), calibrated: None };
        let both = LabelScores { raw: Some(0.2), calibrated: Some(0.9) };
        let only_fit = LabelScores { raw: None, calibrated: Some(0.7) };
        assert_eq!(both.used(ScoreKind::ZeroShot), Some(0.2), "zero-shot ignores a fit");
        assert_eq!(both.used(ScoreKind::Calibrated), Some(0.9));
        assert_eq!(zs.used(ScoreKind::Calibrated), Some(0.2), "calibrated without a fit: the zero-shot score");
        assert_eq!(only_fit.used(ScoreKind::Examples), Some(0.7));
        assert_eq!(LabelScores::default().used(ScoreKind::Examples), None, "no examples: no score");
        // crop regions: each score is its best region's
        let m = zs.max(LabelScores { raw: Some(0.1), calibrated: Some(0.4) });
        assert_eq!(m, LabelScores { raw: Some(0.2), calibrated: Some(0.4) });
    }

    #[test]
    fn the_state_carries_raw_and_calibrated_once_a_label_has_a_fit() {
        let toml = "[model]\nbundle = \"x\"\n[[camera]]\nid = \"c\"\nsource = { kind = \"files\", path = \"x\" }\n\
            [[camera.label]]\nname = \"cat\"\nscore = \"calibrated\"\n[[camera.label]]\nname = \"car\"\n\
            [[camera.label]]\nname = \"ours\"\nscore = \"examples\"\n";
        let cfg = crate::config::Config::parse(toml, "test", std::path::Path::new("")).unwrap();
        let cam = &cfg.cameras[0];
        let none = [
            LabelScores { raw: Some(0.3), calibrated: None },
            LabelScores { raw: Some(0.6), calibrated: None },
            LabelScores::default(),
        ];
        let s = state_msg(cam, &none, 1.0, 2.0);
        assert_eq!(s.scores.len(), 2, "a label from examples alone has no score yet: {s:?}");
        assert!(s.raw.is_empty() && s.calibrated.is_empty());
        assert_eq!(s.top[0].label, "car");
        let fitted =
            [LabelScores { raw: Some(0.3), calibrated: Some(0.95) }, none[1], LabelScores { raw: None, calibrated: Some(0.1) }];
        let s = state_msg(cam, &fitted, 1.0, 2.0);
        assert_eq!((s.scores["cat"], s.scores["ours"]), (0.95, 0.1));
        assert_eq!((s.raw["cat"], s.raw["car"], s.raw.get("ours")), (0.3, 0.6, None));
        assert_eq!((s.calibrated["cat"], s.calibrated["ours"], s.calibrated.get("car")), (0.95, 0.1, None));
        assert_eq!(s.top[0].label, "cat");
    }
}
