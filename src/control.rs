//! Runtime controls changed over MQTT (`…/enabled/set`, `…/<label>/threshold/set`) and read by
//! the inference thread on every frame.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::config::CameraConfig;
use crate::decide::Thresholds;

pub struct CameraControl {
    pub id: String,
    enabled: AtomicBool,
    /// (label slug, thresholds), in config order.
    labels: Vec<(String, Mutex<Thresholds>)>,
}

pub struct Controls {
    pub cameras: Vec<CameraControl>,
}

impl Controls {
    pub fn new(cams: &[CameraConfig]) -> Self {
        Self {
            cameras: cams
                .iter()
                .map(|c| CameraControl {
                    id: c.id.clone(),
                    enabled: AtomicBool::new(c.enabled),
                    labels: c
                        .labels
                        .iter()
                        .map(|l| (l.slug.clone(), Mutex::new(Thresholds { on: l.on, off: l.off })))
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn camera(&self, id: &str) -> Option<&CameraControl> {
        self.cameras.iter().find(|c| c.id == id)
    }
}

impl CameraControl {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed)
    }

    pub fn thresholds(&self, index: usize) -> Thresholds {
        *self.labels[index].1.lock().unwrap()
    }

    pub fn label_slugs(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(|(s, _)| s.as_str())
    }

    /// Sets the on-threshold, keeping the configured hysteresis gap below it. Returns the
    /// thresholds now in force, or None for an unknown label.
    pub fn set_threshold(&self, slug: &str, on: f32) -> Option<Thresholds> {
        let (_, t) = self.labels.iter().find(|(s, _)| s == slug)?;
        let mut t = t.lock().unwrap();
        let gap = t.on - t.off;
        *t = Thresholds { on, off: (on - gap).max(0.0) };
        Some(*t)
    }

    pub fn threshold_of(&self, slug: &str) -> Option<Thresholds> {
        self.labels.iter().find(|(s, _)| s == slug).map(|(_, t)| *t.lock().unwrap())
    }
}
