//! `siglipd run`: sources → inference thread → sinks, and its life cycle.
//!
//! Threads: one per source, one for inference (tract never runs on the async runtime), a
//! small tokio runtime for MQTT, HTTP and signals, one for stdout. Inference takes the latest
//! frame of the camera whose turn it is (`schedule`), so a slow model or broker never builds a
//! backlog.
//!
//! Life cycle: `run` prepares (model, embeddings), starts a `Running` pipeline and waits for
//! a signal. SIGTERM/SIGINT stops within [`STOP_BUDGET`] (offline published first). SIGHUP
//! re-reads and re-validates the config off the pipeline; an invalid one is logged and the
//! running one kept, a valid one replaces the pipeline (the model is reused when its bundle
//! and precision did not change; MQTT reconnects without publishing `offline`).
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use image::RgbImage;
use tracing::{error, info, warn};

use crate::classify::{dot, sigmoid, Calibration};
use crate::config::{Config, HttpConfig, ScoreKind};
use crate::control::Controls;
use crate::embeddings::{self, LabelEmbedding};
use crate::engine::Engine;
use crate::examples::ExampleStore;
use crate::live::Live;
use crate::model::Bundle;
use crate::signals::{Signals, Stop};
use crate::sink::{mqtt::Mqtt, DropQueue, Output, Sinks};
use crate::source::{self, Doorbell, Payload, Slot, SourceCtx, Status};
use crate::state::StateDir;

mod inference;
pub mod schedule;

use inference::{CameraRun, Inference};

/// SIGTERM to the end of `run`: `offline` published and the pipeline stopped within this, even
/// mid-frame on a slow board; process teardown after it is bounded too (`finish`), so the
/// README's 2 s hold (measured with the base-size model: README "Signals").
pub const STOP_BUDGET: Duration = Duration::from_millis(1400);

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

/// Loads the model and label embeddings for a config (shared by `run` and `check-config`).
pub fn prepare(config: &Config) -> anyhow::Result<(Engine, Vec<Vec<LabelEmbedding>>)> {
    let (bundle, labels) = prepare_labels(config)?;
    crate::bench::apply_threads(&bundle, config.model.threads);
    // `run` never needs the text tower: labels come from the embeddings file
    let engine = Engine::load(bundle, config.model.precision, false)?;
    Ok((engine, labels))
}

/// Every label's `examples` file is readable and an examples export: a config error (exit 78,
/// naming the key) otherwise, before anything is loaded.
fn check_examples_files(config: &Config) -> Result<(), crate::config::ConfigError> {
    for (ci, cam) in config.cameras.iter().enumerate() {
        for (li, l) in cam.labels.iter().enumerate() {
            let Some(path) = &l.examples else { continue };
            if let Err(e) = crate::examples::ExportFile::read(path).and_then(|(f, _)| f.examples_for(path, &l.slug)) {
                return Err(crate::config::ConfigError::Invalid {
                    path: config.origin.clone(),
                    key: format!("camera[{ci}].label[{li}].examples"),
                    message: e.to_string(),
                    hint: Some("a file written by `siglipd examples export`".into()),
                });
            }
        }
    }
    Ok(())
}

/// The bundle and every camera's label embeddings (computing stale embeddings if it must),
/// without loading the vision tower.
pub fn prepare_labels(config: &Config) -> anyhow::Result<(Bundle, Vec<Vec<LabelEmbedding>>)> {
    // start, check-config and a SIGHUP reload all refuse a bad `examples` file alike
    check_examples_files(config)?;
    let bundle = Bundle::open(&config.model.bundle).with_context(|| format!("model.bundle in {}", config.origin))?;
    let file = embeddings::load_or_embed(config, &bundle)?;
    let labels = config.cameras.iter().map(|c| embeddings::camera_labels(c, &file)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok((bundle, labels))
}

/// A validated config with everything it needs loaded, ready to run.
struct Prepared {
    config: Config,
    engine: Engine,
    labels: Vec<Vec<LabelEmbedding>>,
}

/// Runs until SIGTERM/SIGINT; SIGHUP reloads `reload_from` (None: the embedded demo).
pub fn run(config: Config, reload_from: Option<PathBuf>) -> anyhow::Result<()> {
    info!(config = %config.origin, cameras = config.cameras.len(), "starting siglipd");
    let (engine, labels) = prepare(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("siglipd-io")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut signals = {
        let _guard = rt.enter();
        Signals::install().context("cannot install signal handlers")?
    };
    // one state directory per process, locked for its lifetime (reloads keep it)
    let state = open_state(&config);
    let state_path = config.state_dir.clone();
    let mut next = Prepared { config, engine, labels };
    loop {
        if next.config.state_dir != state_path {
            warn!(dir = %state_path.display(), "[state] dir changed in the config: a restart moves to the new one (this process keeps its lock on the old)");
        }
        let running = Running::start(&rt, next, state.clone())?;
        match rt.block_on(wait_for_stop(&mut signals, reload_from.clone(), &running.config)) {
            None => {
                let engine = running.stop(&rt, Stop::Terminate, true);
                // the process is ending: freeing a base-size model (hundreds of MB) or waiting
                // for idle runtime threads would only delay the exit systemd waits for
                std::mem::forget(engine);
                rt.shutdown_timeout(Duration::from_millis(100));
                info!("stopped");
                return Ok(());
            }
            Some((config, bundle, labels)) => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                let old = running.config.clone();
                // a reload that drops MQTT or moves it to another broker/topic root says goodbye
                // there (the clean disconnect sends no last will)
                let same_mqtt = match (&old.mqtt, &config.mqtt) {
                    (Some(a), Some(b)) => a.base == b.base && a.host == b.host && a.port == b.port,
                    _ => false,
                };
                let engine = running.stop(&rt, Stop::Reload, !same_mqtt);
                // `model.threads` applies to a reused engine too (tract's pool is process-wide)
                crate::bench::apply_threads(&bundle, config.model.threads);
                let engine = match engine {
                    Some(e) if old.model.bundle == config.model.bundle && old.model.precision == config.model.precision => e,
                    _ => Engine::load(bundle, config.model.precision, false)?,
                };
                info!(config = %config.origin, cameras = config.cameras.len(), "configuration reloaded");
                next = Prepared { config, engine, labels };
            }
        }
    }
}

/// Waits for SIGTERM/SIGINT (→ None) or a SIGHUP whose config is valid (→ the new config,
/// its bundle and labels). An invalid config on SIGHUP is logged; the running one stays.
async fn wait_for_stop(
    signals: &mut Signals,
    path: Option<PathBuf>,
    running: &Config,
) -> Option<(Config, Bundle, Vec<Vec<LabelEmbedding>>)> {
    loop {
        if signals.next().await == Stop::Terminate {
            return None;
        }
        let path = path.clone();
        let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let config = match &path {
                Some(p) => Config::load(p)?,
                None => Config::embedded_default()?,
            };
            let (bundle, labels) = prepare_labels(&config)?;
            Ok((config, bundle, labels))
        });
        tokio::select! {
            r = checked => match r {
                Ok(Ok(new)) => return Some(new),
                Ok(Err(e)) => error!("the new configuration is not valid, keeping the running one ({}): {e:#}", running.origin),
                Err(e) => error!("checking the new configuration failed, keeping the running one: {e}"),
            },
            // a stop while a reload is being checked wins
            stop = signals.next() => if stop == Stop::Terminate { return None },
        }
    }
}

/// One pipeline: sources, inference, sinks, web server, watchdog.
struct Running {
    config: Config,
    shutdown: Arc<AtomicBool>,
    bell: Arc<Doorbell>,
    mqtt: Option<Mqtt>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    inference: Receiver<Engine>,
    stdout_sink: Option<std::thread::JoinHandle<()>>,
    sources: Vec<std::thread::JoinHandle<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
    controls: Arc<Controls>,
}

impl Running {
    fn start(rt: &tokio::runtime::Runtime, p: Prepared, state: Option<StateDir>) -> anyhow::Result<Self> {
        let Prepared { config, engine, labels } = p;
        let controls = match &state {
            Some(s) => Controls::persistent(&config.cameras, s),
            None => Arc::new(Controls::new(&config.cameras, None)),
        };
        let live = Arc::new(Live::new(&config.cameras));
        let shutdown = Arc::new(AtomicBool::new(false));
        let (sinks, mqtt, stdout_sink) = start_sinks(rt, &config, &controls, &live, state.as_ref(), &shutdown)?;
        let bell = Arc::new(Doorbell::default());
        let mut cams = Vec::new();
        let mut sources = Vec::new();
        for ((cfg, labels), live_cam) in config.cameras.iter().zip(labels).zip(&live.cameras) {
            let slot = Arc::new(Slot::new(bell.clone()));
            let (sinks2, id, live2) = (sinks.clone(), cfg.id.clone(), live_cam.clone());
            let ctx = SourceCtx {
                camera: cfg.id.clone(),
                slot: slot.clone(),
                shutdown: shutdown.clone(),
                status: Arc::new(move |s: Status| {
                    if let Some(online) = live2.set_source_online(s == Status::Online) {
                        sinks2.send(Output::Status { camera: id.clone(), online });
                    }
                }),
                interval: cfg.interval,
                watchdog: cfg.watchdog,
            };
            sources.push(source::spawn(cfg, ctx).context("cannot start a source thread")?);
            let gaps = cfg.labels.iter().map(|l| l.on - l.off).collect();
            let _ = live_cam.model.set(crate::live::LabelModel { labels: labels.clone(), calibration: engine.calibration, gaps });
            cams.push(CameraRun::new(cfg, slot, labels, live_cam.clone()));
        }
        let mut engine = engine;
        let examples = Arc::new(std::sync::Mutex::new(load_examples(&config, state.clone(), &mut engine, &live)));
        let (http_stop, jobs) = match &config.http {
            Some(h) => {
                let parts =
                    HttpParts { live: live.clone(), controls: controls.clone(), bell: bell.clone(), examples, sinks: sinks.clone() };
                let (stop, jobs) = start_http(h, &engine, rt, parts);
                (Some(stop), jobs)
            }
            None => (None, None),
        };
        let inference = Inference {
            pixels: vec![0f32; engine.pre.tensor_len()],
            engine,
            cams,
            bell: bell.clone(),
            shutdown: shutdown.clone(),
            sinks,
            controls: controls.clone(),
            snapshots: config.mqtt.as_ref().is_some_and(|m| m.snapshots),
            live: live.clone(),
            jobs,
            clock: schedule::WallClock::new(),
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                let _ = done_tx.send(inference.run());
            })
            .context("cannot start the inference thread")?;
        info!("running; stop with SIGTERM or Ctrl-C, reload the config with SIGHUP");
        let watchdog = systemd_ready(&live, &shutdown, config.cameras.len());
        Ok(Self { config, shutdown, bell, mqtt, http_stop, inference: done_rx, stdout_sink, sources, watchdog, controls })
    }

    /// Stops everything. `Terminate`: `offline` is published and this returns within
    /// [`STOP_BUDGET`] even if the inference thread is mid-frame (the process then exits
    /// under it). `Reload`: waits for the inference thread and returns its engine.
    fn stop(self, rt: &tokio::runtime::Runtime, why: Stop, offline: bool) -> Option<Engine> {
        let started = Instant::now();
        if why == Stop::Terminate {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        }
        self.shutdown.store(true, Ordering::Relaxed);
        self.bell.ring();
        if let Some(stop) = self.http_stop {
            let _ = stop.send(());
        }
        if let Some(m) = self.mqtt {
            rt.block_on(m.shutdown(Duration::from_millis(1200), offline));
        }
        // no more commands arrive: what was set last is on disk before the process goes
        if let Err(e) = self.controls.flush() {
            warn!("{e} (run-time controls will revert to the config at restart)");
        }
        let engine = match why {
            Stop::Terminate => {
                let left = STOP_BUDGET.saturating_sub(started.elapsed());
                let e = self.inference.recv_timeout(left).ok();
                if e.is_none() {
                    warn!("the inference thread is still inside a frame: exiting without waiting for it");
                }
                e
            }
            Stop::Reload => self.inference.recv().ok(),
        };
        if let Some(t) = self.watchdog {
            let _ = t.join();
        }
        if let Some(t) = self.stdout_sink {
            let _ = t.join();
        }
        for t in self.sources {
            if t.is_finished() {
                let _ = t.join();
            } // a source blocked in a read (HTTP timeout, camera) ends on its own or with the process
        }
        engine
    }
}

/// The state directory, or None with a loud warning: run-time changes then last only until
/// the next restart, which the warning says, and how to fix it.
fn open_state(config: &Config) -> Option<StateDir> {
    match StateDir::open(&config.state_dir) {
        Ok(s) => Some(s),
        Err(e) => {
            error!("{e}");
            None
        }
    }
}

/// The marked examples: loaded, the config's `examples` files imported (re-embedded from
/// their images when another model made them), every label fitted. Problems are logged; none
/// stops the daemon.
fn load_examples(config: &Config, state: Option<StateDir>, engine: &mut Engine, live: &Live) -> ExampleStore {
    let mut store = ExampleStore::load(state, &engine.vision_sha256());
    if let Some(e) = store.stale() {
        warn!("{e}");
    }
    for (camera, label, n) in store.unclaimed(|c, l| config.has_label(c, l)) {
        warn!(camera = %camera, label = %label, "{n} marked example(s) belong to no configured label (renamed or removed?): kept; rename the label back, or move them with `siglipd examples export --camera {camera} --label {label}` and `examples import --label …`");
    }
    for (cam, live_cam) in config.cameras.iter().zip(&live.cameras) {
        for l in &cam.labels {
            let Some(path) = &l.examples else { continue };
            let mut reembed = |jpeg: &[u8]| engine.embed_encoded(jpeg, "an imported example's image");
            match store.import_once(path, &cam.id, &l.slug, Some(&mut reembed)) {
                Ok(Some(r)) => info!(camera = %cam.id, label = %l.name, file = %path.display(), added = r.added,
                    duplicates = r.duplicates, reembedded = r.reembedded, without_image = r.without_image, "imported examples"),
                Ok(None) => {}
                Err(e) => error!(camera = %cam.id, label = %l.name, "examples not imported: {e}"),
            }
        }
        for (label, why) in live_cam.refit(&store) {
            warn!(camera = %cam.id, label = %label, "no model fitted from the marked examples: {why}");
        }
        let fits = live_cam.fits();
        for (l, fit) in cam.labels.iter().zip(&fits) {
            if l.score == ScoreKind::Examples && fit.is_none() && store.stale().is_none() {
                warn!(camera = %cam.id, label = %l.name, "this label is scored from examples alone and has fewer than {} marked yes and {} no: it stays OFF until they are marked (live view, or `siglipd examples add`)",
                    crate::calibrate::MIN_PER_CLASS, crate::calibrate::MIN_PER_CLASS);
            }
        }
    }
    store
}

type StartedSinks = (Sinks, Option<Mqtt>, Option<std::thread::JoinHandle<()>>);

fn start_sinks(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    controls: &Arc<Controls>,
    live: &Arc<Live>,
    state: Option<&StateDir>,
    shutdown: &Arc<AtomicBool>,
) -> anyhow::Result<StartedSinks> {
    let mut sinks = Sinks::default();
    let mqtt = match &config.mqtt {
        Some(m) => {
            let _guard = rt.enter();
            let mqtt = Mqtt::start(m, &config.cameras, controls.clone(), state.cloned())?;
            sinks.add(mqtt.queue.clone());
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
        sinks.add(q.clone());
        Some(crate::sink::stdout::spawn(q, shutdown.clone()))
    } else {
        None
    };
    if sinks.is_empty() {
        warn!("no [mqtt] section and output.stdout = false: results go nowhere but the debug log");
    }
    Ok((sinks, mqtt, stdout_sink))
}

/// Starts the web page + API on the daemon's runtime. A port that cannot be bound is logged
/// and the daemon runs on without it (MQTT is the main job). Returns the server's stop switch
/// and the upload queue the inference thread serves, if uploads are on.
/// What the web server shares with the pipeline.
struct HttpParts {
    live: Arc<Live>,
    controls: Arc<Controls>,
    bell: Arc<Doorbell>,
    examples: Arc<std::sync::Mutex<ExampleStore>>,
    sinks: Sinks,
}

fn start_http(
    h: &HttpConfig,
    engine: &Engine,
    rt: &tokio::runtime::Runtime,
    parts: HttpParts,
) -> (tokio::sync::oneshot::Sender<()>, Option<Receiver<crate::http::Job>>) {
    let HttpParts { live, controls, bell, examples, sinks } = parts;
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
        live: Some(live),
        controls: Some(controls),
        examples: Some(examples),
        sinks: Some(sinks),
    });
    let addr = h.bind;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(async move {
        // after a reload the old server may still hold the port for a moment
        let mut tries = 0;
        let listener = loop {
            match crate::http::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 20 => {
                    tries += 1;
                    tracing::debug!("{e:#}: retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return error!("web page disabled: {e:#} (http.bind; the daemon keeps running)"),
            }
        };
        crate::http::serve_connections(listener, app, crate::http::ConnLimits::default(), async {
            let _ = stop_rx.await;
        })
        .await;
    });
    (stop_tx, jobs)
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
                    error!(
                        stalled_s = live.since_beat().as_secs_f64(),
                        "inference loop stalled: no longer feeding the systemd watchdog"
                    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_regions_are_fractions_clamped_to_the_frame() {
        let img = RgbImage::from_fn(100, 50, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = crate::model::preprocess::crop_region(&img, &[0.5, 0.0, 0.5, 1.0]);
        assert_eq!(c.dimensions(), (50, 50));
        assert_eq!(c.get_pixel(0, 0).0, [50, 0, 0]);
        let tiny = crate::model::preprocess::crop_region(&img, &[0.999, 0.999, 0.001, 0.001]);
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
