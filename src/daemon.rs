//! `siglipd run`: sources → inference thread → sinks.
//!
//! Threads: one per source, one for inference (tract never runs on the async runtime), a
//! small tokio runtime for MQTT and signals, one for stdout. Inference takes the latest frame
//! of each due camera, so a slow model or broker never builds a backlog.
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use image::RgbImage;
use serde_json::json;
use tracing::{debug, error, info, warn};

use crate::classify::{dot, sigmoid, Calibration};
use crate::config::{CameraConfig, Config, HttpConfig};
use crate::control::Controls;
use crate::decide::{EventKind, LabelState};
use crate::embeddings::{self, LabelEmbedding};
use crate::engine::Engine;
use crate::model::{preprocess, Bundle};
use crate::sink::{mqtt::Mqtt, DropQueue, Output};
use crate::live::{Live, LiveCamera};
use crate::source::{self, Doorbell, Payload, Slot, SourceCtx, Status};

/// Unix time in seconds.
pub fn wall_clock() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Fans outputs out to every sink without blocking.
#[derive(Clone, Default)]
pub struct Sinks(Vec<Arc<DropQueue<Output>>>);

impl Sinks {
    pub fn send(&self, o: Output) {
        if let Some((last, rest)) = self.0.split_last() {
            for q in rest {
                q.push(o.clone());
            }
            last.push(o);
        }
    }
}

struct CameraRun {
    cfg: CameraConfig,
    slot: Arc<Slot>,
    labels: Vec<LabelEmbedding>,
    states: Vec<LabelState>,
    due: Instant,
    last_thumb: Option<Vec<u8>>,
    last_run: Option<Instant>,
    /// What the web page and /metrics see; counters live there.
    live: Arc<LiveCamera>,
    error_kinds_seen: HashSet<String>,
    published_initial: bool,
}

/// One label's score: sigmoid of the (ensembled) prompt, damped by the strongest negative
/// prompt: `p_pos · (1 − max p_neg)`.
pub fn label_score(cal: &Calibration, img: &[f32], l: &LabelEmbedding) -> f32 {
    let pos = sigmoid(dot(img, &l.positive) * cal.scale + cal.bias);
    let neg = l.negatives.iter().map(|n| cal.score(img, n)).fold(0.0, f32::max);
    pos * (1.0 - neg)
}

/// 32×32 grayscale thumbnail for change gating.
fn thumbnail(img: &RgbImage) -> Vec<u8> {
    // grayscale straight from the borrowed frame: no copy of the full image per gated frame
    image::imageops::thumbnail(&image::imageops::grayscale(img), 32, 32).into_raw()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as u64).sum::<u64>() as f64 / (255.0 * a.len() as f64)
}

fn crop(img: &RgbImage, r: &[f64; 4]) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let x = ((r[0] * w).round() as u32).min(img.width() - 1);
    let y = ((r[1] * h).round() as u32).min(img.height() - 1);
    let cw = ((r[2] * w).round() as u32).clamp(1, img.width() - x);
    let ch = ((r[3] * h).round() as u32).clamp(1, img.height() - y);
    image::imageops::crop_imm(img, x, y, cw, ch).to_image()
}

fn snapshot_jpeg(payload: &Payload, img: &RgbImage) -> Option<Vec<u8>> {
    if let Payload::Encoded(bytes) = payload {
        if bytes.starts_with(&[0xFF, 0xD8]) {
            return Some(bytes.clone()); // already a JPEG: no re-encode
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(img).ok()?;
    Some(out)
}

struct Inference {
    engine: Engine,
    cams: Vec<CameraRun>,
    bell: Arc<Doorbell>,
    shutdown: Arc<AtomicBool>,
    sinks: Sinks,
    controls: Arc<Controls>,
    snapshots: bool,
    pixels: Vec<f32>,
    live: Arc<Live>,
    /// Uploads from the web page, run between frames.
    jobs: Option<Receiver<crate::http::Job>>,
}

impl Inference {
    fn run(mut self) {
        let mut last_report = Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            self.live.beat();
            // at most one upload per turn, so the page cannot starve the cameras
            if let Some(job) = self.jobs.as_ref().and_then(|rx| rx.try_recv().ok()) {
                job.run(&mut self.engine);
            }
            let now = Instant::now();
            let next = (0..self.cams.len()).find(|&i| self.cams[i].due <= now && self.cams[i].slot.has_frame());
            match next {
                Some(i) => self.step(i),
                None => {
                    let wait = self
                        .cams
                        .iter()
                        .map(|c| c.due.saturating_duration_since(now))
                        .filter(|d| !d.is_zero())
                        .min()
                        .unwrap_or(Duration::from_millis(200))
                        .min(Duration::from_millis(200));
                    self.bell.wait(wait);
                }
            }
            if last_report.elapsed() >= Duration::from_secs(60) {
                last_report = Instant::now();
                for c in &self.cams {
                    let n = &c.live.counters;
                    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                    info!(camera = %c.cfg.id, processed = ld(&n.processed), unchanged = ld(&n.unchanged),
                        failed = ld(&n.failed), paused = ld(&n.paused), stale_dropped = ld(&c.slot.dropped), "camera counters");
                }
            }
        }
        debug!("inference thread stopped");
    }

    fn step(&mut self, i: usize) {
        let ctrl = &self.controls.cameras[i];
        let cam = &mut self.cams[i];
        let Some(frame) = cam.slot.take() else { return };
        let counters = &cam.live.counters;
        counters.dropped.store(cam.slot.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
        let now = Instant::now();
        cam.due = now + cam.cfg.interval;
        if !ctrl.enabled() {
            counters.paused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let decoded = match &frame.payload {
            Payload::Encoded(bytes) => preprocess::decode(bytes, &frame.origin, self.engine.pre.max_pixels),
            Payload::Rgb(img) => Ok(img.clone()),
        };
        let img = match decoded {
            Ok(img) => img,
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                // log each kind of failure once per camera, then only count it
                let kind = e.to_string().split(':').next().unwrap_or_default().to_string();
                if cam.error_kinds_seen.insert(kind) {
                    warn!(camera = %cam.cfg.id, "skipping frame: {e} (further frames failing like this are only counted)");
                } else {
                    debug!(camera = %cam.cfg.id, "skipping frame: {e}");
                }
                return;
            }
        };
        if let Some(gate) = cam.cfg.change_gate {
            let thumb = thumbnail(&img);
            let forced = cam.last_run.is_none_or(|t| now.duration_since(t) >= gate.force_every);
            if let (Some(prev), false) = (&cam.last_thumb, forced) {
                if mean_abs_diff(prev, &thumb) < gate.threshold {
                    counters.unchanged.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            cam.last_thumb = Some(thumb);
        }
        let started = Instant::now();
        let cal = self.engine.calibration;
        let mut scores = vec![0f32; cam.labels.len()];
        let regions: Vec<Option<&[f64; 4]>> =
            if cam.cfg.crops.is_empty() { vec![None] } else { cam.cfg.crops.iter().map(Some).collect() };
        for region in regions {
            let part;
            let view = match region {
                Some(r) => {
                    part = crop(&img, r);
                    &part
                }
                None => &img,
            };
            self.engine.pre.pixels_into(view, &mut self.pixels);
            let emb = match self.engine.vision.embed(&self.pixels) {
                Ok(e) => e,
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    error!(camera = %cam.cfg.id, "inference failed: {e}");
                    return;
                }
            };
            // with several regions, a label is as present as in its best region
            for (s, l) in scores.iter_mut().zip(&cam.labels) {
                *s = s.max(label_score(&cal, &emb, l));
            }
        }
        let infer_s = started.elapsed().as_secs_f64();
        let infer_ms = infer_s * 1000.0;
        self.live.inference_seconds.observe(infer_s);
        cam.last_run = Some(now);
        counters.processed.fetch_add(1, Ordering::Relaxed);
        let wall = wall_clock();

        let mut ranked: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<_> = ranked
            .iter()
            .take(cam.cfg.top_k)
            .map(|(j, s)| json!({"label": cam.cfg.labels[*j].name, "score": s}))
            .collect();
        let by_label: serde_json::Map<String, serde_json::Value> =
            cam.cfg.labels.iter().zip(&scores).map(|(l, s)| (l.name.clone(), json!(s))).collect();
        let state = json!({"ts": wall, "top": top, "scores": by_label, "infer_ms": (infer_ms * 10.0).round() / 10.0});
        debug!(camera = %cam.cfg.id, infer_ms, frame = %frame.origin, "frame scored");
        self.sinks.send(Output::State { camera: cam.cfg.id.clone(), json: state.clone() });

        for (j, l) in cam.cfg.labels.iter().enumerate() {
            let (_, change) = cam.states[j].update(scores[j], ctrl.thresholds(j), now, wall);
            if change.state.is_some() || !cam.published_initial {
                let on = cam.states[j].is_on();
                self.sinks.send(Output::Label { camera: cam.cfg.id.clone(), label: l.slug.clone(), on });
                if change.state == Some(true) && self.snapshots {
                    if let Some(jpeg) = snapshot_jpeg(&frame.payload, &img) {
                        self.sinks.send(Output::Snapshot { camera: cam.cfg.id.clone(), label: l.slug.clone(), jpeg });
                    }
                }
            }
            if let Some(ev) = change.event {
                if ev.kind == EventKind::New {
                    info!(camera = %cam.cfg.id, label = %l.name, score = ev.score, "label ON");
                } else if ev.kind == EventKind::End {
                    info!(camera = %cam.cfg.id, label = %l.name, "label OFF");
                }
                self.sinks.send(Output::Event(json!({
                    "type": ev.kind.as_str(),
                    "id": format!("{:.3}-{}-{}", ev.start_time, cam.cfg.id, l.slug),
                    "camera": cam.cfg.id,
                    "label": l.name,
                    "score": ev.score,
                    "top_score": ev.top_score,
                    "start_time": ev.start_time,
                    "end_time": ev.end_time,
                })));
            }
        }
        cam.published_initial = true;
        // moved, not copied: the web server encodes it only if someone looks
        cam.live.update(state, cam.states.iter().map(LabelState::is_on).collect(), frame.payload);
    }
}

/// Loads the model and label embeddings for a config (shared by `run` and `check-config`).
pub fn prepare(config: &Config) -> anyhow::Result<(Engine, Vec<Vec<LabelEmbedding>>)> {
    let bundle = Bundle::open(&config.model.bundle)
        .with_context(|| format!("model.bundle in {}", config.origin))?;
    crate::bench::apply_threads(&bundle, config.model.threads);
    let file = embeddings::load_or_embed(config, &bundle)?;
    let labels = config
        .cameras
        .iter()
        .map(|c| embeddings::camera_labels(c, &file))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // `run` never needs the text tower: labels come from the embeddings file
    let engine = Engine::load(bundle, config.model.precision, false)?;
    Ok((engine, labels))
}

/// Starts the web page + API on the daemon's runtime. A port that cannot be bound is logged
/// and the daemon runs on without it (MQTT is the main job). Returns the upload queue the
/// inference thread serves, if uploads are on.
fn start_http(
    h: &HttpConfig,
    engine: &Engine,
    rt: &tokio::runtime::Runtime,
    live: &Arc<Live>,
    controls: &Arc<Controls>,
    bell: &Arc<Doorbell>,
) -> Option<Receiver<crate::http::Job>> {
    let limits = crate::http::Limits { max_upload_bytes: h.max_upload_bytes, max_labels: h.max_labels, ..Default::default() };
    let (classifier, jobs) = if h.demo && engine.bundle.has_text() {
        let (c, rx) = crate::http::Classifier::attach(engine, &limits, Some(bell.clone()));
        (Some(Arc::new(c)), Some(rx))
    } else {
        if h.demo {
            warn!("the model bundle has no text tower: the web page shows the cameras but cannot score uploads");
        }
        (None, None)
    };
    let app = crate::http::router(crate::http::Api {
        classifier,
        limits,
        token: h.token.clone(),
        live: Some(live.clone()),
        controls: Some(controls.clone()),
    });
    let addr = h.bind;
    rt.spawn(async move {
        match crate::http::bind(addr).await {
            Ok(listener) => {
                if let Err(e) = axum::serve(listener, app).await {
                    error!("web server stopped: {e}");
                }
            }
            Err(e) => error!("web page disabled: {e:#} (http.bind; the daemon keeps running)"),
        }
    });
    jobs
}

/// Tells systemd (`Type=notify`) that the daemon is up, and when the unit has `WatchdogSec=`,
/// pings the watchdog from a thread that checks the inference loop's heartbeat: a stuck
/// pipeline stops the pings and systemd restarts the service. Without NOTIFY_SOCKET (not under
/// systemd) this does nothing.
fn systemd_ready(live: &Arc<Live>, shutdown: &Arc<AtomicBool>, cameras: usize) -> Option<std::thread::JoinHandle<()>> {
    let status = format!("running {cameras} camera(s)");
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]) {
        warn!("cannot notify systemd: {e}");
    }
    let period = sd_notify::watchdog_enabled()?;
    info!(watchdog_s = period.as_secs_f64(), "feeding the systemd watchdog from the inference loop's heartbeat");
    let (live, shutdown) = (live.clone(), shutdown.clone());
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut stalled = false;
            while !shutdown.load(Ordering::Relaxed) {
                if watchdog_should_ping(live.since_beat(), period) {
                    if stalled {
                        info!("inference loop turning again: feeding the watchdog");
                        stalled = false;
                    }
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                } else if !stalled {
                    error!(stalled_s = live.since_beat().as_secs_f64(), "inference loop stalled: no longer feeding the systemd watchdog");
                    stalled = true;
                }
                // ping at a third of the period; wake often enough to notice shutdown
                let until = Instant::now() + period / 3;
                while Instant::now() < until && !shutdown.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50).min(period / 3));
                }
            }
        })
        .ok()
}

/// Ping only while the loop has turned within half the watchdog period, so that a loop stuck
/// for a whole period is certainly not pinged for.
fn watchdog_should_ping(since_beat: Duration, period: Duration) -> bool {
    since_beat < period / 2
}

/// Runs until SIGTERM/SIGINT. Returns when everything is stopped.
pub fn run(config: Config) -> anyhow::Result<()> {
    info!(config = %config.origin, cameras = config.cameras.len(), "starting siglipd");
    let (engine, labels) = prepare(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("siglipd-io")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let controls = Arc::new(Controls::new(&config.cameras));
    let live = Arc::new(Live::new(&config.cameras));

    let mut sinks = Sinks::default();
    let mqtt = match &config.mqtt {
        Some(m) => {
            let _guard = rt.enter();
            let mqtt = Mqtt::start(m, &config.cameras, controls.clone())?;
            sinks.0.push(mqtt.queue.clone());
            let (connected, drops) = mqtt.probes();
            *live.mqtt_connected.lock().unwrap() = Some(connected);
            *live.publish_drops.lock().unwrap() = Some(drops);
            info!(base = %m.base, broker = %format!("{}:{}", m.host, m.port), "publishing to MQTT");
            Some(mqtt)
        }
        None => None,
    };
    let stdout_sink = if config.stdout {
        let q = Arc::new(DropQueue::new(1000));
        sinks.0.push(q.clone());
        Some(crate::sink::stdout::spawn(q, shutdown.clone()))
    } else {
        None
    };
    if sinks.0.is_empty() {
        warn!("no [mqtt] section and output.stdout = false: results go nowhere but the debug log");
    }

    let bell = Arc::new(Doorbell::default());
    let mut cams = Vec::new();
    let mut source_threads = Vec::new();
    for ((cfg, labels), live_cam) in config.cameras.iter().zip(labels).zip(&live.cameras) {
        let slot = Arc::new(Slot::new(bell.clone()));
        let sinks2 = sinks.clone();
        let id = cfg.id.clone();
        let live2 = live_cam.clone();
        let ctx = SourceCtx {
            camera: cfg.id.clone(),
            slot: slot.clone(),
            shutdown: shutdown.clone(),
            status: Arc::new(move |s: Status| {
                live2.online.store(s == Status::Online, Ordering::Relaxed);
                sinks2.send(Output::Status { camera: id.clone(), online: s == Status::Online })
            }),
            interval: cfg.interval,
            watchdog: cfg.watchdog,
        };
        source_threads.push(source::spawn(cfg, ctx).context("cannot start a source thread")?);
        let states = cfg.labels.iter().map(|l| LabelState::new(cfg.smoothing, l.hold, l.cooldown)).collect();
        cams.push(CameraRun {
            cfg: cfg.clone(),
            slot,
            labels,
            states,
            due: Instant::now(),
            last_thumb: None,
            last_run: None,
            live: live_cam.clone(),
            error_kinds_seen: HashSet::new(),
            published_initial: false,
        });
    }
    let pixels = vec![0f32; engine.pre.tensor_len()];
    let live_for_watchdog = live.clone();
    let jobs = match &config.http {
        Some(h) => start_http(h, &engine, &rt, &live, &controls, &bell),
        None => None,
    };
    let inference = Inference {
        engine,
        cams,
        bell: bell.clone(),
        shutdown: shutdown.clone(),
        sinks,
        controls,
        snapshots: config.mqtt.as_ref().is_some_and(|m| m.snapshots),
        pixels,
        live,
        jobs,
    };
    let inference_thread = std::thread::Builder::new()
        .name("inference".into())
        .spawn(move || inference.run())
        .context("cannot start the inference thread")?;
    info!("running; stop with SIGTERM or Ctrl-C");
    let watchdog = systemd_ready(&live_for_watchdog, &shutdown, config.cameras.len());

    rt.block_on(crate::app::shutdown_signal());
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    shutdown.store(true, Ordering::Relaxed);
    if let Some(t) = watchdog {
        let _ = t.join();
    }
    bell.ring();
    if let Some(m) = mqtt {
        rt.block_on(m.shutdown(Duration::from_millis(1200)));
    }
    // the inference thread finishes its current frame; sources notice within 50 ms
    let _ = inference_thread.join();
    if let Some(t) = stdout_sink {
        let _ = t.join();
    }
    for t in source_threads {
        if t.is_finished() {
            let _ = t.join();
        } // a source blocked in a read (HTTP timeout, camera) is left to process exit
    }
    rt.shutdown_timeout(Duration::from_millis(200));
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_regions_are_fractions_clamped_to_the_frame() {
        let img = RgbImage::from_fn(100, 50, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = crop(&img, &[0.5, 0.0, 0.5, 1.0]);
        assert_eq!(c.dimensions(), (50, 50));
        assert_eq!(c.get_pixel(0, 0).0, [50, 0, 0]);
        let tiny = crop(&img, &[0.999, 0.999, 0.001, 0.001]);
        assert_eq!(tiny.dimensions(), (1, 1));
    }

    #[test]
    fn change_gate_measures_thumbnail_difference() {
        let a = thumbnail(&RgbImage::from_pixel(64, 48, image::Rgb([100, 100, 100])));
        let b = thumbnail(&RgbImage::from_pixel(64, 48, image::Rgb([151, 151, 151])));
        assert_eq!(mean_abs_diff(&a, &a), 0.0);
        assert!((mean_abs_diff(&a, &b) - 0.2).abs() < 0.01);
    }

    #[test]
    fn watchdog_pings_only_while_the_loop_turns() {
        let p = Duration::from_secs(10);
        assert!(watchdog_should_ping(Duration::from_millis(200), p));
        assert!(!watchdog_should_ping(Duration::from_secs(5), p));
        assert!(!watchdog_should_ping(Duration::from_secs(60), p));
    }

    #[test]
    fn negatives_damp_a_label() {
        let cal = Calibration::from_log_scale(10f32.ln(), 0.0);
        let img = [1.0, 0.0];
        let plain = LabelEmbedding { positive: vec![1.0, 0.0], negatives: vec![] };
        let damped = LabelEmbedding { positive: vec![1.0, 0.0], negatives: vec![vec![1.0, 0.0]] };
        let p = label_score(&cal, &img, &plain);
        assert!((p - sigmoid(10.0)).abs() < 1e-6);
        assert!((label_score(&cal, &img, &damped) - p * (1.0 - p)).abs() < 1e-6);
    }
}
