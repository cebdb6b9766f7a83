//! Where results go: MQTT (`mqtt`) and stdout (`stdout`). The inference thread pushes
//! [`Output`]s into each sink's [`DropQueue`] and never waits: a full queue drops its oldest
//! entry and counts it.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

pub mod discovery;
pub mod mqtt;
pub mod stdout;

/// `…/<camera>/state` after each scored frame. Home Assistant templates read these keys
/// (`value_json.top[0].label`, `value_json.infer_ms`): renaming one is a breaking change.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateMsg {
    /// Unix seconds (never earlier than a previous message: see `daemon::WallClock`).
    pub ts: f64,
    /// The `top_k` best labels, best first.
    pub top: Vec<TopLabel>,
    /// Every label's score (0..1) by display name: the one its thresholds apply to (see
    /// `config::ScoreKind`). A label scored from examples alone is absent until it has enough.
    pub scores: std::collections::BTreeMap<String, f32>,
    /// Present when a label of the camera has a model fitted on marked examples: the zero-shot
    /// score of every label with prompts…
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub raw: std::collections::BTreeMap<String, f32>,
    /// …and the fitted probability of every label that has one (whichever score it uses).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub calibrated: std::collections::BTreeMap<String, f32>,
    /// Vision tower time for this frame (all crop regions), milliseconds, one decimal.
    pub infer_ms: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopLabel {
    pub label: String,
    pub score: f32,
}

/// `…/events`: Frigate's event shape, flattened (`type` new | update | end).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventMsg {
    #[serde(rename = "type")]
    pub kind: String,
    /// `<start_time>-<camera>-<label slug>`: equal for every message of one episode.
    pub id: String,
    pub camera: String,
    /// The label's display name.
    pub label: String,
    pub score: f32,
    pub top_score: f32,
    pub start_time: f64,
    pub end_time: Option<f64>,
    /// Why an episode ended other than by its score (`paused`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Something the daemon tells the world.
#[derive(Debug, Clone)]
pub enum Output {
    /// After each inference.
    State {
        camera: String,
        state: std::sync::Arc<StateMsg>,
    },
    /// A label's smoothed ON/OFF state changed (or its first value).
    Label {
        camera: String,
        label: String,
        on: bool,
    },
    Event(EventMsg),
    /// The camera's source went online or offline.
    Status {
        camera: String,
        online: bool,
    },
    /// A label's on-threshold was set from the page (MQTT acknowledges its own commands).
    Threshold {
        camera: String,
        label: String,
        on: f32,
    },
    /// JPEG of the frame that turned a label ON.
    Snapshot {
        camera: String,
        label: String,
        jpeg: Vec<u8>,
    },
}

/// Fans outputs out to every sink without blocking (the inference thread, the web server).
#[derive(Clone, Default)]
pub struct Sinks(Vec<std::sync::Arc<DropQueue<Output>>>);

impl Sinks {
    pub fn add(&mut self, q: std::sync::Arc<DropQueue<Output>>) {
        self.0.push(q);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn send(&self, o: Output) {
        if let Some((last, rest)) = self.0.split_last() {
            for q in rest {
                q.push(o.clone());
            }
            last.push(o);
        }
    }
}

/// Bounded queue where the producer never blocks: when full, the oldest entry is dropped.
pub struct DropQueue<T> {
    items: Mutex<VecDeque<T>>,
    cap: usize,
    pub dropped: AtomicU64,
    notify: Notify,
}

impl<T> DropQueue<T> {
    pub fn new(cap: usize) -> Self {
        Self { items: Mutex::new(VecDeque::new()), cap: cap.max(1), dropped: AtomicU64::new(0), notify: Notify::new() }
    }

    pub fn push(&self, item: T) {
        let mut q = self.items.lock().unwrap();
        if q.len() >= self.cap {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(item);
        drop(q);
        self.notify.notify_one();
    }

    pub fn pop(&self) -> Option<T> {
        self.items.lock().unwrap().pop_front()
    }

    /// Puts an item back at the front (a publish that could not go out yet).
    pub fn push_front(&self, item: T) {
        self.items.lock().unwrap().push_front(item);
    }

    pub fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until something is pushed (returns at once if a push happened since the last wait).
    pub async fn wait(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_oldest_when_full() {
        let q = DropQueue::new(2);
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(3), Some(4), None));
        assert_eq!(q.dropped.load(Ordering::Relaxed), 3);
    }
}
