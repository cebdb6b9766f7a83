//! Run-time controls (`…/enabled/set`, `…/<label>/threshold/set` over MQTT), read by the
//! inference thread on every frame and kept in the state directory across restarts.
//!
//! Which value wins at start: a value set at run time is kept only while the config still says
//! what it said when the value was set. Each stored value records the config value it
//! overrode; when the config has changed since (someone edited it on purpose), the config wins
//! and the stored value is dropped, with an info line.
//!
//! Hysteresis: a new `on` threshold moves `off` with it, keeping the configured gap
//! (`on − off` from the config, never the gap of a previous clamp), clamped at 0.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::CameraConfig;
use crate::decide::Thresholds;
use crate::state::StateDir;

pub const FILE: &str = "controls.json";
const FORMAT: &str = "siglipd-controls";
const VERSION: u32 = 1;

struct LabelControl {
    slug: String,
    /// From the config: the defaults, and the hysteresis gap.
    config: Thresholds,
    now: Mutex<Thresholds>,
}

pub struct CameraControl {
    pub id: String,
    config_enabled: bool,
    enabled: AtomicBool,
    labels: Vec<LabelControl>,
}

pub struct Controls {
    pub cameras: Vec<CameraControl>,
    /// Wakes the writer thread after a change (None: not persisted, e.g. in tests).
    saver: Mutex<Option<SyncSender<()>>>,
    /// Where `controls.json` goes (None: not persisted); held while writing, so a later
    /// snapshot is never overwritten by an earlier one.
    state: Mutex<Option<StateDir>>,
    /// A change not yet written.
    unsaved: AtomicBool,
}

/// `controls.json`: per camera, per label, the value in force and the config value it
/// overrode.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub cameras: BTreeMap<String, SavedCamera>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCamera {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Overridden<bool>>,
    #[serde(default)]
    pub labels: BTreeMap<String, Overridden<SavedThresholds>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SavedThresholds {
    pub on: f32,
    pub off: f32,
}

/// A value set at run time and the config value it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Overridden<T> {
    pub value: T,
    pub config: T,
}

impl From<Thresholds> for SavedThresholds {
    fn from(t: Thresholds) -> Self {
        Self { on: t.on, off: t.off }
    }
}

impl Controls {
    /// The config's values, then what `saved` (from the state directory) still applies to.
    pub fn new(cams: &[CameraConfig], saved: Option<&Saved>) -> Self {
        let cameras = cams
            .iter()
            .map(|c| {
                let s = saved.and_then(|s| s.cameras.get(&c.id));
                let enabled = match s.and_then(|s| s.enabled) {
                    Some(o) if o.config == c.enabled => o.value,
                    Some(_) => {
                        info!(camera = %c.id, "camera.enabled changed in the config: the config's value replaces the one set at run time");
                        c.enabled
                    }
                    None => c.enabled,
                };
                let labels = c
                    .labels
                    .iter()
                    .map(|l| {
                        let config = Thresholds { on: l.on, off: l.off };
                        let now = match s.and_then(|s| s.labels.get(&l.slug)) {
                            Some(o) if o.config == config.into() => Thresholds { on: o.value.on, off: o.value.off },
                            Some(_) => {
                                info!(camera = %c.id, label = %l.name, "thresholds changed in the config: the config's values replace the ones set at run time");
                                config
                            }
                            None => config,
                        };
                        LabelControl { slug: l.slug.clone(), config, now: Mutex::new(now) }
                    })
                    .collect();
                CameraControl { id: c.id.clone(), config_enabled: c.enabled, enabled: AtomicBool::new(enabled), labels }
            })
            .collect();
        Self { cameras, saver: Mutex::new(None), state: Mutex::new(None), unsaved: AtomicBool::new(false) }
    }

    /// Loads `controls.json` from `state` and starts the thread that writes it after every
    /// change (coalesced; the disk never waits in the MQTT task or the inference loop).
    pub fn persistent(cams: &[CameraConfig], state: &StateDir) -> Arc<Self> {
        let saved: Option<Saved> = state.read(FILE, FORMAT, VERSION);
        let me = Arc::new(Self::new(cams, saved.as_ref()));
        let (tx, rx) = sync_channel::<()>(1);
        *me.saver.lock().unwrap() = Some(tx);
        *me.state.lock().unwrap() = Some(state.clone());
        let weak = Arc::downgrade(&me);
        let spawned = std::thread::Builder::new().name("controls-save".into()).spawn(move || {
            let mut warned = false;
            while rx.recv().is_ok() {
                let Some(me) = weak.upgrade() else { return };
                match me.flush() {
                    Ok(()) => warned = false,
                    Err(e) if !warned => {
                        warned = true;
                        warn!("{e} (run-time controls will revert to the config at restart)");
                    }
                    Err(_) => {}
                }
            }
        });
        if let Err(e) = spawned {
            warn!("cannot start the controls writer: {e} (run-time controls will not persist)");
            *me.saver.lock().unwrap() = None;
        }
        me
    }

    /// Writes the snapshot if something changed since the last write, on the caller's thread.
    /// The writer thread calls it after each change, and so does the daemon's stop path, so a
    /// change made just before a restart is not left to that thread (which a busy CPU may not
    /// have scheduled yet). Errors: the state directory's write error.
    pub fn flush(&self) -> Result<(), crate::state::StateError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = state.as_ref() else { return Ok(()) };
        if !self.unsaved.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        state.write(FILE, FORMAT, VERSION, &self.snapshot()).inspect_err(|_| self.unsaved.store(true, Ordering::Release))
    }

    pub fn camera(&self, id: &str) -> Option<&CameraControl> {
        self.cameras.iter().find(|c| c.id == id)
    }

    /// What `controls.json` holds: only values that differ from the config.
    pub fn snapshot(&self) -> Saved {
        let mut out = Saved::default();
        for c in &self.cameras {
            let mut sc = SavedCamera::default();
            if c.enabled() != c.config_enabled {
                sc.enabled = Some(Overridden { value: c.enabled(), config: c.config_enabled });
            }
            for l in &c.labels {
                let now = *l.now.lock().unwrap();
                if now != l.config {
                    sc.labels.insert(l.slug.clone(), Overridden { value: now.into(), config: l.config.into() });
                }
            }
            if sc != SavedCamera::default() {
                out.cameras.insert(c.id.clone(), sc);
            }
        }
        out
    }

    fn changed(&self) {
        self.unsaved.store(true, Ordering::Release);
        if let Some(tx) = self.saver.lock().unwrap().as_ref() {
            // a full channel means a save is already pending: it will see this change too
            if let Err(TrySendError::Disconnected(_)) = tx.try_send(()) {
                warn!("the controls writer stopped: run-time controls will not persist");
            }
        }
    }

    pub fn set_enabled(&self, camera: &str, on: bool) -> Option<bool> {
        let c = self.camera(camera)?;
        c.enabled.store(on, Ordering::Relaxed);
        self.changed();
        Some(on)
    }

    /// Sets a label's on-threshold (0..=1), `off` follows at the configured gap. Returns the
    /// thresholds now in force, or None for an unknown camera or label.
    pub fn set_threshold(&self, camera: &str, slug: &str, on: f32) -> Option<Thresholds> {
        let l = self.camera(camera)?.labels.iter().find(|l| l.slug == slug)?;
        let gap = l.config.on - l.config.off;
        let t = Thresholds { on, off: (on - gap).max(0.0) };
        *l.now.lock().unwrap() = t;
        self.changed();
        Some(t)
    }
}

impl CameraControl {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Thresholds of the label at `index` (config order).
    pub fn thresholds(&self, index: usize) -> Thresholds {
        *self.labels[index].now.lock().unwrap()
    }

    pub fn label_slugs(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(|l| l.slug.as_str())
    }

    pub fn threshold_of(&self, slug: &str) -> Option<Thresholds> {
        self.labels.iter().find(|l| l.slug == slug).map(|l| *l.now.lock().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cams(on: f64, off: f64, enabled: bool) -> Vec<CameraConfig> {
        let toml = format!(
            "[model]\nbundle = \"m\"\n[[camera]]\nid = \"door\"\nenabled = {enabled}\nsource = {{ kind = \"files\", path = \"x\" }}\n[[camera.label]]\nname = \"cat\"\non = {on}\noff = {off}\n"
        );
        Config::parse(&toml, "t", std::path::Path::new("/")).unwrap().cameras
    }

    #[test]
    fn hysteresis_gap_survives_a_clamp() {
        let c = Controls::new(&cams(0.6, 0.5, true), None);
        let t = c.set_threshold("door", "cat", 0.05).unwrap();
        assert_eq!(t.off, 0.0);
        let t = c.set_threshold("door", "cat", 0.5).unwrap();
        assert!((t.off - 0.4).abs() < 1e-6, "gap 0.1 restored, got off = {}", t.off);
        assert!(c.set_threshold("door", "dog", 0.5).is_none());
        assert!(c.set_threshold("garage", "cat", 0.5).is_none());
    }

    #[test]
    fn saved_values_apply_while_the_config_is_unchanged() {
        let cfg = cams(0.6, 0.5, true);
        let c = Controls::new(&cfg, None);
        c.set_threshold("door", "cat", 0.8);
        c.set_enabled("door", false);
        let saved = c.snapshot();
        // same config: the run-time values come back
        let again = Controls::new(&cfg, Some(&saved));
        assert!(!again.cameras[0].enabled());
        assert!((again.cameras[0].thresholds(0).on - 0.8).abs() < 1e-6);
        // the user edited the thresholds in the config: the config wins, `enabled` is kept
        let edited = Controls::new(&cams(0.7, 0.6, true), Some(&saved));
        assert!((edited.cameras[0].thresholds(0).on - 0.7).abs() < 1e-6);
        assert!(!edited.cameras[0].enabled());
        // back to the config's values: nothing left to store
        c.set_threshold("door", "cat", 0.6);
        c.set_enabled("door", true);
        assert_eq!(c.snapshot(), Saved::default());
    }

    #[test]
    fn changes_are_written_to_the_state_directory() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(d.path()).unwrap();
        let cfg = cams(0.6, 0.5, true);
        let c = Controls::persistent(&cfg, &state);
        c.set_threshold("door", "cat", 0.9);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let saved: Option<Saved> = state.read(FILE, FORMAT, VERSION);
            if saved.as_ref().is_some_and(|s| !s.cameras.is_empty()) {
                let again = Controls::new(&cfg, saved.as_ref());
                assert!((again.cameras[0].thresholds(0).on - 0.9).abs() < 1e-6);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "controls.json was not written");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn flush_writes_what_the_writer_thread_has_not_yet() {
        // the stop path's write, without a writer thread that could get there first
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(d.path()).unwrap();
        let cfg = cams(0.6, 0.5, true);
        let c = Controls::new(&cfg, None);
        *c.state.lock().unwrap() = Some(state.clone());
        c.flush().unwrap();
        assert!(state.read::<Saved>(FILE, FORMAT, VERSION).is_none(), "nothing changed, nothing written");
        c.set_enabled("door", false);
        c.flush().unwrap();
        let saved: Option<Saved> = state.read(FILE, FORMAT, VERSION);
        assert!(!Controls::new(&cfg, saved.as_ref()).cameras[0].enabled());
    }
}
