//! Frame sources. Each camera's source runs on its own thread and hands frames to a
//! [`Slot`]: the latest frame wins, an unconsumed older frame is dropped and counted, so a
//! slow model never works through a queue of stale frames.
//!
//! Invariants: a source never blocks inference; a failing source reports `offline`, retries
//! with capped backoff and reports `online` again once a frame arrives.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{CameraConfig, SourceConfig};

pub mod camera;
pub mod command;
pub mod files;
pub mod http;
pub mod mjpeg;
pub mod sniff;

/// A frame as the source delivered it.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Encoded image bytes (JPEG, PNG, …): files, HTTP snapshots, MJPEG streams.
    Encoded(Vec<u8>),
    /// Already decoded (a YUYV camera).
    Rgb(image::RgbImage),
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub payload: Payload,
    /// For messages: which file or URL this came from.
    pub origin: String,
}

/// Wakes the inference thread when any camera has a new frame.
#[derive(Default)]
pub struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    pub fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.cv.notify_all();
    }

    /// Waits until rung or `timeout`; clears the bell.
    pub fn wait(&self, timeout: Duration) {
        let guard = self.rung.lock().unwrap();
        let (mut guard, _) = self.cv.wait_timeout_while(guard, timeout, |rung| !*rung).unwrap();
        *guard = false;
    }
}

/// Latest-frame-wins hand-over between one source thread and the inference thread.
pub struct Slot {
    frame: Mutex<Option<Frame>>,
    bell: Arc<Doorbell>,
    /// Frames replaced before inference took them.
    pub dropped: AtomicU64,
    pub received: AtomicU64,
}

impl Slot {
    pub fn new(bell: Arc<Doorbell>) -> Self {
        Self { frame: Mutex::new(None), bell, dropped: AtomicU64::new(0), received: AtomicU64::new(0) }
    }

    pub fn put(&self, frame: Frame) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if self.frame.lock().unwrap().replace(frame).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.bell.ring();
    }

    pub fn take(&self) -> Option<Frame> {
        self.frame.lock().unwrap().take()
    }

    pub fn has_frame(&self) -> bool {
        self.frame.lock().unwrap().is_some()
    }
}

/// What a source tells the rest of the daemon about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Online,
    Offline(String),
}

/// Everything a source thread needs: where frames go, how to report, when to stop.
#[derive(Clone)]
pub struct SourceCtx {
    pub camera: String,
    pub slot: Arc<Slot>,
    pub shutdown: Arc<AtomicBool>,
    pub status: Arc<dyn Fn(Status) + Send + Sync>,
    pub interval: Duration,
    pub watchdog: Duration,
}

impl SourceCtx {
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking early on shutdown. Returns false when shutting down.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.stopping() {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
        false
    }
}

/// Capped exponential backoff with jitter, for reopening sources and reconnecting.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { next: min, min, max }
    }

    /// The delay to wait now (with ±20% jitter); doubles the next one up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d.mul_f64(0.8 + 0.4 * fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Reports status changes only (not every retry), so logs and MQTT are not flooded.
pub struct StatusTracker {
    ctx: SourceCtx,
    last: Option<Status>,
    failures: u64,
}

impl StatusTracker {
    pub fn new(ctx: SourceCtx) -> Self {
        Self { ctx, last: None, failures: 0 }
    }

    pub fn online(&mut self) {
        if self.last != Some(Status::Online) {
            if self.failures > 0 {
                tracing::info!(camera = %self.ctx.camera, after_failures = self.failures, "source recovered");
            }
            self.failures = 0;
            self.last = Some(Status::Online);
            (self.ctx.status)(Status::Online);
        }
    }

    pub fn offline(&mut self, why: String) {
        self.failures += 1;
        if !matches!(self.last, Some(Status::Offline(_))) {
            tracing::warn!(camera = %self.ctx.camera, "source failed: {why} (retrying with backoff)");
            self.last = Some(Status::Offline(why.clone()));
            (self.ctx.status)(Status::Offline(why));
        } else {
            tracing::debug!(camera = %self.ctx.camera, failures = self.failures, "source still failing: {why}");
        }
    }
}

/// A hint for errors that mean the process ran out of file descriptors (EMFILE/ENFILE).
pub fn fd_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            " (the process is out of file descriptors: raise LimitNOFILE= or find what holds them)"
        }
        _ => "",
    }
}

/// Starts the camera's source thread.
pub fn spawn(cam: &CameraConfig, ctx: SourceCtx) -> std::io::Result<std::thread::JoinHandle<()>> {
    let source = cam.source.clone();
    std::thread::Builder::new().name(format!("source-{}", cam.id)).spawn(move || match source {
        SourceConfig::Files { pattern, looping } => files::run(&pattern, looping, ctx),
        SourceConfig::Http { url, timeout } => http::run(&url, timeout, ctx),
        SourceConfig::Command { program, args } => command::run(&program, &args, ctx),
        SourceConfig::Camera { device, min_side } => camera::run(device, min_side, ctx),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_keeps_latest_and_counts_drops() {
        let slot = Slot::new(Arc::new(Doorbell::default()));
        for i in 0..3u8 {
            slot.put(Frame { payload: Payload::Encoded(vec![i]), origin: String::new() });
        }
        assert!(matches!(slot.take().unwrap().payload, Payload::Encoded(b) if b == vec![2]));
        assert!(slot.take().is_none());
        assert_eq!(slot.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(slot.received.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn backoff_doubles_up_to_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert!((80..=120).contains(&d[0]) && (160..=240).contains(&d[1]), "{d:?}");
        assert!((320..=480).contains(&d[2]) && (320..=480).contains(&d[3]), "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
