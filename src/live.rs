//! What the daemon is doing right now, shared read-mostly between the inference thread (the
//! only writer of results), the source threads (online/offline) and the web server (reader):
//! per-camera last state and frame, counters, and a heartbeat of the inference loop.
//!
//! Invariants: writers never block on readers for longer than a pointer swap (the last frame
//! is moved in, not copied or encoded; the web server encodes on request, off the runtime);
//! counters only grow.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{CameraConfig, ScoreKind};
use crate::examples::ExampleStore;
use crate::sink::StateMsg;
use crate::source::Payload;
use crate::teach::{fit_label, LabelFit, LabelText};

/// Latency histograms (seconds), as `/metrics` exposes them.
pub type Histogram = prometheus_client::metrics::histogram::Histogram;

/// Buckets of every latency histogram, seconds: a tiny model on a PC to a base model on a Pi 4.
pub const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Default)]
pub struct CameraCounters {
    pub processed: AtomicU64,
    /// Skipped by the change gate.
    pub unchanged: AtomicU64,
    /// Skipped while the camera is disabled.
    pub paused: AtomicU64,
    /// Frames that could not be decoded or inferred.
    pub failed: AtomicU64,
    /// Frames replaced in the source slot before inference took them (latest wins).
    pub dropped: AtomicU64,
}

#[derive(Default)]
struct Latest {
    /// As published on `…/state`.
    state: Option<Arc<StateMsg>>,
    /// ON/OFF per label, config order.
    on: Vec<bool>,
    /// The last [`KEPT_FRAMES`] scored frames, oldest first (the last is the latest).
    recent: std::collections::VecDeque<ScoredFrame>,
}

/// Scored frames are kept per camera for this long, so "mark this frame" stores the frame the
/// page showed (it polls every 2 s) rather than whatever was scored since…
pub const KEPT_SECONDS: f64 = 10.0;
/// …within this many bytes of frames (a 1920×1080 frame from a V4L2 camera is 6 MB decoded; an
/// encoded frame costs its JPEG); the latest frame is always kept.
pub const KEPT_BYTES: usize = 32 << 20;

/// A scored frame: its state's `ts`, each crop region's image embedding, the frame itself.
#[derive(Clone)]
pub struct ScoredFrame {
    pub ts: f64,
    pub embeddings: Arc<Vec<Vec<f32>>>,
    pub frame: Arc<Payload>,
}

/// What decides a camera's `status`: its source delivers frames, and those frames can be
/// scored. `online` only when both hold.
#[derive(Default)]
struct Health {
    source_online: bool,
    /// Why the recent frames could not be scored (None: they could).
    failing: Option<String>,
    /// The status last reported (None: nothing yet).
    reported: Option<bool>,
}

/// How well the scheduler keeps up with a camera (written by the inference thread).
#[derive(Default)]
pub struct Pace {
    /// Seconds between the camera's due time and when it was scored, last frame (f64 bits).
    lag_s: AtomicU64,
    /// Scored frames per second, exponentially smoothed (f64 bits).
    rate_fps: AtomicU64,
}

impl Pace {
    pub fn record(&self, lag: Duration, since_last: Option<Duration>) {
        self.lag_s.store(lag.as_secs_f64().to_bits(), Ordering::Relaxed);
        if let Some(dt) = since_last.filter(|d| !d.is_zero()) {
            let inst = 1.0 / dt.as_secs_f64();
            let old = f64::from_bits(self.rate_fps.load(Ordering::Relaxed));
            let new = if old == 0.0 { inst } else { 0.8 * old + 0.2 * inst };
            self.rate_fps.store(new.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn lag_s(&self) -> f64 {
        f64::from_bits(self.lag_s.load(Ordering::Relaxed))
    }

    pub fn rate_fps(&self) -> f64 {
        f64::from_bits(self.rate_fps.load(Ordering::Relaxed))
    }
}

pub struct LiveCamera {
    pub id: String,
    pub name: String,
    labels: Vec<String>,
    /// Configured frames per second (1 / interval).
    pub target_fps: f64,
    pub online: AtomicBool,
    pub counters: CameraCounters,
    pub pace: Pace,
    health: Mutex<Health>,
    latest: Mutex<Latest>,
    /// Per label (config order): its score history, see `history`.
    pub history: Mutex<Vec<crate::history::LabelHistory>>,
    /// Display names and slugs of the labels (config order), for history lookups.
    pub label_slugs: Vec<String>,
    /// The labels' text side, for suggestions from examples (set once the model is loaded).
    pub model: std::sync::OnceLock<LabelModel>,
    /// The camera's crop regions (empty: the whole frame), as a scored frame's embeddings are ordered.
    pub crops: Vec<[f64; 4]>,
    /// Per label (config order): the score its thresholds apply to.
    pub score_kinds: Vec<ScoreKind>,
    /// Per label (config order): its model fitted on marked examples, None until it has
    /// enough. Written by whoever changes the examples ([`LiveCamera::refit`]), read by the
    /// inference thread once per frame (a pointer copy).
    pub fits: Mutex<Vec<Option<Arc<LabelFit>>>>,
}

/// What the web server needs of a camera's labels to judge examples.
pub struct LabelModel {
    pub labels: Vec<crate::embeddings::LabelEmbedding>,
    pub calibration: crate::classify::Calibration,
    /// Configured `on − off` per label.
    pub gaps: Vec<f32>,
}

impl LabelModel {
    /// Label `i` as `teach` needs it.
    pub fn text(&self, i: usize) -> LabelText<'_> {
        LabelText { text: Some(&self.labels[i].positive), cal: self.calibration }
    }
}

/// One camera in `/api/cameras` (the page's live view reads this shape; see http/PAGE.md).
#[derive(Serialize)]
pub struct CameraView {
    pub id: String,
    pub name: String,
    pub online: bool,
    /// Why the camera is not online (source down, frames failing), if it is not.
    pub problem: Option<String>,
    pub enabled: bool,
    pub state: Option<StateMsg>,
    pub labels: Vec<LabelView>,
    pub counters: CountersView,
    pub target_fps: f64,
    pub rate_fps: f64,
    pub lag_s: f64,
}

#[derive(Serialize)]
pub struct LabelView {
    pub name: String,
    pub on: bool,
    /// What its thresholds apply to (`score` in the config).
    pub score: ScoreKind,
    /// It has a model fitted on marked examples.
    pub fitted: bool,
}

#[derive(Serialize)]
pub struct CountersView {
    pub processed: u64,
    pub unchanged: u64,
    pub paused: u64,
    pub failed: u64,
    pub dropped: u64,
}

impl LiveCamera {
    /// Called by the inference thread after each scored frame (`embeddings`: one per crop
    /// region, the whole frame without crops).
    pub fn update(&self, state: Arc<StateMsg>, on: Vec<bool>, frame: Payload, embeddings: Vec<Vec<f32>>) {
        let scored = ScoredFrame { ts: state.ts, embeddings: Arc::new(embeddings), frame: Arc::new(frame) };
        let newest = scored.ts;
        let mut l = self.latest.lock().unwrap();
        l.state = Some(state);
        l.on = on;
        l.recent.push_back(scored);
        let size = |f: &ScoredFrame| match &*f.frame {
            Payload::Encoded(b) => b.len(),
            Payload::Rgb(img) => img.as_raw().len(),
        };
        let mut bytes: usize = l.recent.iter().map(size).sum();
        while l.recent.len() > 1 && (bytes > KEPT_BYTES || l.recent.front().is_some_and(|f| newest - f.ts > KEPT_SECONDS)) {
            let old = l.recent.pop_front().expect("more than one");
            bytes -= size(&old);
        }
    }

    /// The scored frame whose state had `ts` (None: the latest), if it is still kept.
    pub fn scored(&self, ts: Option<f64>) -> Option<ScoredFrame> {
        let l = self.latest.lock().unwrap();
        match ts {
            None => l.recent.back().cloned(),
            Some(t) => l.recent.iter().rev().find(|f| (f.ts - t).abs() < 1e-6).cloned(),
        }
    }

    /// Index of a label given by display name or slug.
    pub fn label_index(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|n| n == label).or_else(|| self.label_slugs.iter().position(|s| s == label))
    }

    pub fn label_name(&self, i: usize) -> &str {
        &self.labels[i]
    }

    /// Fits every label of this camera again from `store` (after examples changed, and at
    /// start). A label whose examples cannot be used has no fit; fit errors (a corrupt store)
    /// are returned per label for the caller to report.
    pub fn refit(&self, store: &ExampleStore) -> Vec<(String, String)> {
        let Some(model) = self.model.get() else { return Vec::new() };
        let mut problems = Vec::new();
        let fits = (0..self.labels.len())
            .map(|i| {
                // unusable examples (another model, no state directory) are reported where
                // they are loaded: here they simply give no fit
                let examples = store.list(&self.id, &self.label_slugs[i]).unwrap_or_default();
                fit_label(&examples, model.text(i)).unwrap_or_else(|why| {
                    problems.push((self.labels[i].clone(), why.to_string()));
                    None
                })
            })
            .map(|f| f.map(Arc::new))
            .collect::<Vec<_>>();
        let before = std::mem::replace(&mut *self.fits.lock().unwrap(), fits.clone());
        for (i, (old, new)) in before.iter().zip(&fits).enumerate() {
            match (old, new) {
                (None, Some(f)) => tracing::info!(camera = %self.id, label = %self.labels[i], positives = f.positives,
                    negatives = f.negatives, "label fitted on its marked examples"),
                (Some(_), None) => tracing::info!(camera = %self.id, label = %self.labels[i],
                    "label has no fitted model any more (fewer than 3 marked yes and 3 no)"),
                _ => {}
            }
        }
        problems
    }

    /// The current fits (a copy of the pointers).
    pub fn fits(&self) -> Vec<Option<Arc<LabelFit>>> {
        self.fits.lock().unwrap().clone()
    }

    /// After a pause: the labels are OFF.
    pub fn set_all_off(&self) {
        let mut l = self.latest.lock().unwrap();
        l.on.iter_mut().for_each(|o| *o = false);
    }

    /// The frame scored at `ts` if it is still kept, else the latest.
    pub fn frame(&self, ts: Option<f64>) -> Option<Arc<Payload>> {
        self.scored(ts).or_else(|| self.scored(None)).map(|f| f.frame)
    }

    /// The source reports frames flowing (or not). Returns the camera's new status when it
    /// changed, for the caller to publish.
    pub fn set_source_online(&self, online: bool) -> Option<bool> {
        let mut h = self.health.lock().unwrap();
        h.source_online = online;
        self.settle(&mut h)
    }

    /// The inference thread reports whether recent frames could be scored (`Some(why)`: none
    /// of the recent ones could). Returns the new status when it changed.
    pub fn set_failing(&self, failing: Option<String>) -> Option<bool> {
        let mut h = self.health.lock().unwrap();
        h.failing = failing;
        self.settle(&mut h)
    }

    fn settle(&self, h: &mut Health) -> Option<bool> {
        let now = h.source_online && h.failing.is_none();
        self.online.store(now, Ordering::Relaxed);
        (h.reported != Some(now)).then(|| {
            h.reported = Some(now);
            now
        })
    }

    /// None when online, else why not.
    pub fn problem(&self) -> Option<String> {
        let h = self.health.lock().unwrap();
        if !h.source_online {
            Some(format!("camera {} offline (its source delivers no frames)", self.id))
        } else {
            h.failing.as_ref().map(|why| format!("camera {}: recent frames could not be scored: {why}", self.id))
        }
    }

    pub fn view(&self, enabled: bool) -> CameraView {
        let fits = self.fits();
        let l = self.latest.lock().unwrap();
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CameraView {
            id: self.id.clone(),
            name: self.name.clone(),
            online: self.online.load(Ordering::Relaxed),
            problem: self.problem(),
            enabled,
            state: l.state.as_deref().cloned(),
            labels: self
                .labels
                .iter()
                .enumerate()
                .map(|(i, n)| LabelView {
                    name: n.clone(),
                    on: l.on.get(i).copied().unwrap_or(false),
                    score: self.score_kinds[i],
                    fitted: fits.get(i).is_some_and(Option::is_some),
                })
                .collect(),
            counters: CountersView {
                processed: ld(&c.processed),
                unchanged: ld(&c.unchanged),
                paused: ld(&c.paused),
                failed: ld(&c.failed),
                dropped: ld(&c.dropped),
            },
            target_fps: self.target_fps,
            rate_fps: self.pace.rate_fps(),
            lag_s: self.pace.lag_s(),
        }
    }
}

pub struct Live {
    pub cameras: Vec<Arc<LiveCamera>>,
    pub inference_seconds: Histogram,
    started: Instant,
    /// Milliseconds since `started` when the inference loop last went round.
    heartbeat_ms: AtomicU64,
    pub mqtt_connected: Mutex<Option<Arc<dyn Fn() -> bool + Send + Sync>>>,
    /// Outputs dropped before reaching the broker (full queue) or refused by the client.
    pub publish_drops: Mutex<Option<Arc<dyn Fn() -> u64 + Send + Sync>>>,
}

impl Live {
    pub fn new(cams: &[CameraConfig]) -> Self {
        Self {
            cameras: cams
                .iter()
                .map(|c| {
                    Arc::new(LiveCamera {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        labels: c.labels.iter().map(|l| l.name.clone()).collect(),
                        target_fps: 1.0 / c.interval.as_secs_f64(),
                        online: AtomicBool::new(false),
                        counters: CameraCounters::default(),
                        pace: Pace::default(),
                        health: Mutex::new(Health::default()),
                        history: Mutex::new(c.labels.iter().map(|_| Default::default()).collect()),
                        label_slugs: c.labels.iter().map(|l| l.slug.clone()).collect(),
                        model: std::sync::OnceLock::new(),
                        crops: c.crops.clone(),
                        score_kinds: c.labels.iter().map(|l| l.score).collect(),
                        fits: Mutex::new(vec![None; c.labels.len()]),
                        latest: Mutex::new(Latest::default()),
                    })
                })
                .collect(),
            inference_seconds: latency_histogram(),
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            mqtt_connected: Mutex::new(None),
            publish_drops: Mutex::new(None),
        }
    }

    pub fn camera(&self, id: &str) -> Option<&Arc<LiveCamera>> {
        self.cameras.iter().find(|c| c.id == id)
    }

    /// The inference loop calls this on every turn (at least every 200 ms while idle).
    pub fn beat(&self) {
        self.heartbeat_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long ago the inference loop last went round.
    pub fn since_beat(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)))
    }

    /// Ready = the inference loop is turning and every camera's source delivers frames.
    /// Returns the reasons it is not.
    pub fn problems(&self, stall: Duration) -> Vec<String> {
        let mut p = Vec::new();
        if self.since_beat() > stall {
            p.push(format!("inference loop stalled for {:.0} s", self.since_beat().as_secs_f64()));
        }
        p.extend(self.cameras.iter().filter_map(|c| c.problem()));
        p
    }
}

/// The daemon's metrics, read from [`Live`] at each scrape (a prometheus-client collector).
pub struct LiveMetrics(pub Arc<Live>);

impl std::fmt::Debug for LiveMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveMetrics")
    }
}

impl prometheus_client::collector::Collector for LiveMetrics {
    fn encode(&self, mut e: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        let live = &self.0;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let per_camera = |e: &mut prometheus_client::encoding::DescriptorEncoder,
                          name: &str,
                          help: &str,
                          kind: MetricType,
                          get: &dyn Fn(&LiveCamera) -> f64|
         -> Result<(), std::fmt::Error> {
            let mut m = e.encode_descriptor(name, help, None, kind)?;
            for c in &live.cameras {
                let labels = [("camera", c.id.as_str())];
                let v = get(c);
                match kind {
                    MetricType::Counter => ConstCounter::new(v as u64).encode(m.encode_family(&labels)?)?,
                    // whole numbers (0/1 flags) as integers, rates and seconds as floats
                    _ if v.fract() == 0.0 && v.abs() < 1e15 => ConstGauge::new(v as i64).encode(m.encode_family(&labels)?)?,
                    _ => ConstGauge::new(v).encode(m.encode_family(&labels)?)?,
                }
            }
            Ok(())
        };
        use MetricType::{Counter, Gauge};
        per_camera(&mut e, "siglipd_frames_processed", "Frames scored", Counter, &|c| ld(&c.counters.processed) as f64)?;
        per_camera(&mut e, "siglipd_frames_skipped", "Frames skipped by the change gate or while disabled", Counter, &|c| {
            (ld(&c.counters.unchanged) + ld(&c.counters.paused)) as f64
        })?;
        per_camera(&mut e, "siglipd_frames_failed", "Frames that could not be decoded or inferred", Counter, &|c| {
            ld(&c.counters.failed) as f64
        })?;
        per_camera(
            &mut e,
            "siglipd_frames_dropped",
            "Frames replaced by a newer one before inference (latest wins)",
            Counter,
            &|c| ld(&c.counters.dropped) as f64,
        )?;
        per_camera(
            &mut e,
            "siglipd_source_up",
            "Whether the camera is online (its source delivers and its frames can be scored)",
            Gauge,
            &|c| u8::from(c.online.load(Ordering::Relaxed)) as f64,
        )?;
        per_camera(&mut e, "siglipd_camera_target_fps", "Configured frames per second (1 / interval_s)", Gauge, &|c| c.target_fps)?;
        per_camera(&mut e, "siglipd_camera_rate_fps", "Frames scored per second, smoothed", Gauge, &|c| c.pace.rate_fps())?;
        per_camera(&mut e, "siglipd_camera_lag_seconds", "How late the last frame was scored after it was due", Gauge, &|c| {
            c.pace.lag_s()
        })?;
        live.inference_seconds.encode(e.encode_descriptor(
            "siglipd_inference_seconds",
            "Vision tower time per scored frame (all crop regions)",
            None,
            MetricType::Histogram,
        )?)?;
        if let Some(f) = live.mqtt_connected.lock().unwrap().as_ref() {
            let m = e.encode_descriptor("siglipd_mqtt_connected", "Whether the MQTT client is connected", None, Gauge)?;
            ConstGauge::new(i64::from(f())).encode(m)?;
        }
        if let Some(f) = live.publish_drops.lock().unwrap().as_ref() {
            let m = e.encode_descriptor("siglipd_mqtt_publish_drops", "Messages dropped before reaching the broker", None, Counter)?;
            ConstCounter::new(f()).encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera() -> Arc<LiveCamera> {
        let cfg = crate::config::Config::parse(
            "[model]\nbundle = \"m\"\n[[camera]]\nid = \"door\"\nsource = { kind = \"files\", path = \"x\" }\n[[camera.label]]\nname = \"cat\"\n",
            "t",
            std::path::Path::new("/"),
        )
        .unwrap();
        Live::new(&cfg.cameras).cameras[0].clone()
    }

    fn state(ts: f64) -> Arc<StateMsg> {
        Arc::new(StateMsg {
            ts,
            top: vec![],
            scores: Default::default(),
            raw: Default::default(),
            calibrated: Default::default(),
            infer_ms: 0.0,
        })
    }

    #[test]
    fn scored_frames_are_kept_by_age_and_bytes_and_found_by_ts() {
        let cam = camera();
        for i in 0..30 {
            let frame = Payload::Encoded(vec![i as u8; 1000]);
            cam.update(state(100.0 + i as f64), vec![false], frame, vec![vec![i as f32]]);
        }
        // 10 s kept: ts 119..=129
        assert!(cam.scored(Some(118.0)).is_none());
        let f = cam.scored(Some(121.0)).expect("kept");
        assert_eq!(f.embeddings[0], vec![21.0]);
        assert!(matches!(&*f.frame, Payload::Encoded(b) if b[0] == 21));
        assert_eq!(cam.scored(None).unwrap().ts, 129.0);
        // a frame for another ts falls back to the latest
        assert!(matches!(&*cam.frame(Some(1.0)).unwrap(), Payload::Encoded(b) if b[0] == 29));
        // big decoded frames: within KEPT_BYTES, and the latest always
        let big = || Payload::Rgb(image::RgbImage::new(2000, 2000)); // 12 MB
        for i in 0..5 {
            cam.update(state(200.0 + i as f64 * 0.1), vec![false], big(), vec![]);
        }
        assert!(cam.scored(Some(200.3)).is_some() && cam.scored(Some(200.2)).is_none(), "two 12 MB frames fit in 32 MiB, not three");
        let huge = Payload::Rgb(image::RgbImage::new(4000, 4000)); // 48 MB
        cam.update(state(300.0), vec![false], huge, vec![]);
        assert_eq!(cam.scored(None).unwrap().ts, 300.0, "the latest is kept even over the budget");
    }

    #[test]
    fn metrics_are_openmetrics_text_per_camera() {
        let cfg = crate::config::Config::parse(
            "[model]\nbundle = \"m\"\n[[camera]]\nid = \"door\"\nsource = { kind = \"files\", path = \"x\" }\n[[camera.label]]\nname = \"cat\"\n",
            "t",
            std::path::Path::new("/"),
        )
        .unwrap();
        let live = Arc::new(Live::new(&cfg.cameras));
        live.inference_seconds.observe(0.004);
        live.inference_seconds.observe(0.3);
        live.cameras[0].counters.processed.fetch_add(2, Ordering::Relaxed);
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register_collector(Box::new(LiveMetrics(live)));
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &reg).unwrap();
        for line in [
            "siglipd_frames_processed_total{camera=\"door\"} 2",
            "siglipd_source_up{camera=\"door\"} 0",
            "siglipd_inference_seconds_bucket{le=\"0.005\"} 1",
            "siglipd_inference_seconds_bucket{le=\"0.5\"} 2",
            "siglipd_inference_seconds_count 2",
        ] {
            assert!(s.lines().any(|l| l == line), "no {line:?} in\n{s}");
        }
        assert!(s.ends_with("# EOF\n"));
    }
}
