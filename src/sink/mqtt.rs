//! MQTT sink (rumqttc) with Home Assistant discovery.
//!
//! Two tasks: the event loop task polls rumqttc continuously (it must never publish-await
//! itself), reconnects with capped exponential backoff + jitter (rumqttc retries immediately),
//! and handles commands; the publisher task drains the daemon's queue with `try_publish`.
//!
//! Invariants: every retained topic's last value is kept in `retained`, and every ConnAck (a
//! fresh clean session) re-subscribes and re-publishes availability, discovery, removals and all
//! retained states; while disconnected nothing is handed to rumqttc (its channel would block),
//! events wait in a bounded queue that drops the oldest. No message larger than
//! `mqtt.max_packet_kib` is ever handed to rumqttc or kept as retained (rumqttc would drop the
//! connection, and a retained one would do it again on every reconnect). Commands act only
//! when not retained.
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::discovery::{self, Published, RECORD_FILE, RECORD_FORMAT, RECORD_VERSION};
use super::{DropQueue, Output};
use crate::config::{CameraConfig, MqttConfig};
use crate::control::Controls;
use crate::source::Backoff;
use crate::state::StateDir;

pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

struct Shared {
    client: AsyncClient,
    base: String,
    qos: QoS,
    connected: AtomicBool,
    /// Bumped on every ConnAck and on Home Assistant's `online`: the publisher re-sends all.
    resync: AtomicU64,
    wake: Notify,
    retained: Mutex<BTreeMap<String, Vec<u8>>>,
    discovery: Vec<(String, Vec<u8>)>,
    /// Retained topics of removed cameras/labels (and the previous id scheme), cleared with an
    /// empty payload on every connect of this run.
    clear: Vec<String>,
    /// Written to the state directory once the plan has been delivered.
    record: Mutex<Option<(StateDir, Published)>>,
    discovery_prefix: Option<String>,
    controls: Arc<Controls>,
    shutting_down: AtomicBool,
    pub publish_failures: AtomicU64,
    max_packet_bytes: usize,
    /// Kinds of oversize message already warned about.
    oversize_warned: Mutex<std::collections::HashSet<&'static str>>,
    /// Retained command topics already warned about.
    retained_warned: Mutex<std::collections::HashSet<String>>,
}

pub struct Mqtt {
    pub queue: Arc<DropQueue<Output>>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl Mqtt {
    /// Starts the client tasks on the current tokio runtime. Never waits for the broker: a
    /// broker that is down at start is retried in the background.
    ///
    /// `state`: where the record of what was published lives (removed cameras and labels are
    /// cleared from the broker and Home Assistant on connect); None: no clean-up of removals.
    pub fn start(cfg: &MqttConfig, cams: &[CameraConfig], controls: Arc<Controls>, state: Option<StateDir>) -> anyhow::Result<Self> {
        let base = cfg.base.clone();
        let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
        opts.set_keep_alive(cfg.keep_alive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes);
        opts.set_last_will(LastWill::new(format!("{base}/availability"), OFFLINE, QoS::AtLeastOnce, true));
        if let Some((u, p)) = &cfg.credentials {
            opts.set_credentials(u, p);
        }
        if let Some(tls) = &cfg.tls {
            let ca = std::fs::read(&tls.ca_file).with_context(|| format!("cannot read {}", tls.ca_file.display()))?;
            let client_auth = match &tls.client_auth {
                Some((c, k)) => Some((
                    std::fs::read(c).with_context(|| format!("cannot read {}", c.display()))?,
                    std::fs::read(k).with_context(|| format!("cannot read {}", k.display()))?,
                )),
                None => None,
            };
            // rumqttc's rustls path uses the process-wide provider: ring (cross-builds cleanly)
            let _ = rustls::crypto::ring::default_provider().install_default();
            opts.set_transport(Transport::tls(ca, client_auth, None));
        }
        // rumqttc's request channel: larger than one full resync so try_publish rarely fails
        let retained_estimate: usize = cams.iter().map(|c| 4 + 3 * c.labels.len()).sum();
        let (client, eventloop) = AsyncClient::new(opts, (retained_estimate * 2 + 64).max(cfg.queue));

        let controls2 = controls.clone();
        let mut retained = BTreeMap::new();
        for cam in &controls2.cameras {
            retained.insert(format!("{base}/{}/enabled", cam.id), on_off(cam.enabled()).into());
            for slug in cam.label_slugs() {
                let t = cam.threshold_of(slug).expect("known label");
                retained.insert(format!("{base}/{}/{slug}/threshold", cam.id), fmt_threshold(t.on).into());
            }
        }
        let previous: Option<Published> = state.as_ref().and_then(|s| s.read(RECORD_FILE, RECORD_FORMAT, RECORD_VERSION));
        let plan = discovery::plan(cfg, cams, previous.as_ref());
        if !plan.clear.is_empty() {
            info!(topics = plan.clear.len(), "clearing retained topics of removed cameras, labels or old ids on connect");
        }
        for (topic, payload) in &plan.discovery {
            if !fits(cfg.max_packet_bytes, topic, payload) {
                warn!(topic, bytes = payload.len(), "the discovery payload is larger than mqtt.max_packet_kib allows: raise it (Home Assistant will not see this camera)");
            }
        }
        let shared = Arc::new(Shared {
            client,
            base,
            qos: qos(cfg.qos),
            connected: AtomicBool::new(false),
            resync: AtomicU64::new(0),
            wake: Notify::new(),
            retained: Mutex::new(retained),
            discovery: plan.discovery,
            clear: plan.clear,
            record: Mutex::new(state.map(|s| (s, plan.record))),
            discovery_prefix: cfg.discovery.clone(),
            controls,
            shutting_down: AtomicBool::new(false),
            publish_failures: AtomicU64::new(0),
            max_packet_bytes: cfg.max_packet_bytes,
            oversize_warned: Default::default(),
            retained_warned: Default::default(),
        });
        let queue = Arc::new(DropQueue::new(cfg.queue));
        let endpoint = format!("{}:{}", cfg.host, cfg.port);
        let tasks = vec![
            tokio::spawn(event_loop(shared.clone(), eventloop, endpoint)),
            tokio::spawn(publisher(shared.clone(), queue.clone(), cfg.queue)),
        ];
        Ok(Self { queue, shared, tasks })
    }

    /// Probes for the web server's metrics: connected?, and messages dropped so far (queue
    /// overflow while the broker was away, or refused by the client).
    #[allow(clippy::type_complexity)]
    pub fn probes(&self) -> (Arc<dyn Fn() -> bool + Send + Sync>, Arc<dyn Fn() -> u64 + Send + Sync>) {
        let (a, b, q) = (self.shared.clone(), self.shared.clone(), self.queue.clone());
        (
            Arc::new(move || a.connected.load(Ordering::Relaxed)),
            Arc::new(move || b.publish_failures.load(Ordering::Relaxed) + q.dropped.load(Ordering::Relaxed)),
        )
    }

    /// Disconnects cleanly within `timeout`, publishing `offline` first (retained) when
    /// `offline` (a stop; a reload reconnects at once and leaves availability alone).
    pub async fn shutdown(self, timeout: Duration, offline: bool) {
        let s = &self.shared;
        s.shutting_down.store(true, Ordering::Relaxed);
        if !s.connected.load(Ordering::Relaxed) {
            // nothing to flush and nobody to tell: the broker has our retained `offline` will
            for t in self.tasks {
                t.abort();
            }
            return;
        }
        // let the publisher flush what inference produced last
        let _ = tokio::time::timeout(timeout / 3, async {
            while !self.queue.is_empty() && s.connected.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if s.connected.load(Ordering::Relaxed) {
            if offline {
                let _ = s.client.try_publish(format!("{}/availability", s.base), QoS::AtLeastOnce, true, OFFLINE);
            }
            let _ = s.client.try_disconnect();
        }
        let mut tasks = self.tasks;
        let event_loop = tasks.remove(0);
        if tokio::time::timeout(timeout, event_loop).await.is_err() {
            debug!("mqtt event loop did not finish in time");
        }
        for t in tasks {
            t.abort();
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

fn fmt_threshold(v: f32) -> String {
    format!("{}", (v * 1000.0).round() / 1000.0)
}

async fn event_loop(s: Arc<Shared>, mut eventloop: rumqttc::EventLoop, endpoint: String) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut failures = 0u64;
    let mut ever_connected = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if ever_connected {
                    info!(broker = %endpoint, after_failures = failures, "reconnected to MQTT broker");
                } else {
                    info!(broker = %endpoint, "connected to MQTT broker");
                }
                ever_connected = true;
                failures = 0;
                backoff.reset();
                s.connected.store(true, Ordering::Relaxed);
                s.resync.fetch_add(1, Ordering::Relaxed);
                s.wake.notify_one();
            }
            Ok(Event::Incoming(Packet::Publish(p))) => handle_incoming(&s, &p),
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) if s.shutting_down.load(Ordering::Relaxed) => {
                // drive the loop once more so the disconnect is written, then stop
                let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if s.shutting_down.load(Ordering::Relaxed) {
                    return;
                }
                let was = s.connected.swap(false, Ordering::Relaxed);
                failures += 1;
                if was {
                    warn!(broker = %endpoint, "lost MQTT connection: {e} (reconnecting with backoff)");
                } else if failures == 1 {
                    warn!(broker = %endpoint, "cannot reach MQTT broker: {e} (retrying with backoff; inference keeps running)");
                } else {
                    debug!(broker = %endpoint, failures, "MQTT broker still unreachable: {e}");
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

fn handle_incoming(s: &Arc<Shared>, p: &rumqttc::Publish) {
    let topic = p.topic.as_str();
    let text = String::from_utf8_lossy(&p.payload).trim().to_string();
    if let Some(prefix) = &s.discovery_prefix {
        if topic == format!("{prefix}/status") {
            if text == ONLINE {
                // Home Assistant restarted: resend discovery and states after a short random
                // delay, so many devices don't answer at the same instant
                let s = s.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(100..2000))).await;
                    s.resync.fetch_add(1, Ordering::Relaxed);
                    s.wake.notify_one();
                });
            }
            return;
        }
    }
    let Some(rest) = topic.strip_prefix(&format!("{}/", s.base)) else {
        return;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let is_command = matches!(parts.as_slice(), [_, "enabled", "set"] | [_, _, "threshold", "set"]);
    if is_command && p.retain {
        // a retained command would be applied again on every start and reconnect
        if s.retained_warned.lock().unwrap().insert(topic.to_string()) {
            warn!(topic, "ignored a retained command: commands act only when sent without the retain flag; clear it with `mosquitto_pub -r -n -t '{topic}'`");
        }
        return;
    }
    match parts.as_slice() {
        [cam, "enabled", "set"] => command_enabled(s, cam, topic, &text),
        [cam, label, "threshold", "set"] => command_threshold(s, cam, label, topic, &text),
        _ => {}
    }
}

fn command_enabled(s: &Shared, cam: &str, topic: &str, text: &str) {
    let Some(c) = s.controls.camera(cam) else {
        return warn!("command for unknown camera {cam:?}");
    };
    let want = match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Some(true),
        "off" | "false" | "0" => Some(false),
        _ => None,
    };
    match want {
        Some(on) => {
            s.controls.set_enabled(cam, on);
            info!(camera = %cam, enabled = on, "camera enabled set over MQTT");
        }
        None => warn!(topic, "ignored command payload {text:?} (expected ON or OFF)"),
    }
    publish_retained(s, "control", format!("{}/{cam}/enabled", s.base), on_off(c.enabled()).into());
}

fn command_threshold(s: &Shared, cam: &str, label: &str, topic: &str, text: &str) {
    let Some(c) = s.controls.camera(cam) else {
        return warn!("command for unknown camera {cam:?}");
    };
    let Some(current) = c.threshold_of(label) else {
        return warn!("command for unknown label {label:?} of {cam:?}");
    };
    let now = match text.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => s.controls.set_threshold(cam, label, v).expect("known label"),
        _ => {
            warn!(topic, "ignored threshold {text:?} (expected a number from 0 to 1)");
            current
        }
    };
    info!(camera = %cam, label = %label, on = now.on, off = now.off, "threshold set over MQTT");
    // acknowledged with the value in force, so a rejected value snaps back in HA
    publish_retained(s, "control", format!("{}/{cam}/{label}/threshold", s.base), fmt_threshold(now.on).into());
}

/// Whether a publish of `payload` on `topic` stays within `max` bytes: MQTT fixed header (at
/// most 5 bytes), topic length prefix and topic, packet id, payload.
fn fits(max: usize, topic: &str, payload: &[u8]) -> bool {
    5 + 2 + topic.len() + 2 + payload.len() <= max
}

impl Shared {
    /// False (and a warning once per kind) for a message rumqttc would refuse by dropping the
    /// connection.
    fn sendable(&self, kind: &'static str, topic: &str, payload: &[u8]) -> bool {
        if fits(self.max_packet_bytes, topic, payload) {
            return true;
        }
        self.publish_failures.fetch_add(1, Ordering::Relaxed);
        if self.oversize_warned.lock().unwrap().insert(kind) {
            warn!(
                topic,
                bytes = payload.len(),
                max_bytes = self.max_packet_bytes,
                "dropped a {kind} message larger than mqtt.max_packet_kib allows (raise mqtt.max_packet_kib, and the broker's message_size_limit, to send it); further {kind} drops are only counted in siglipd_mqtt_publish_drops_total"
            );
        } else {
            debug!(topic, bytes = payload.len(), "dropped an oversize {kind} message");
        }
        false
    }
}

fn publish_retained(s: &Shared, kind: &'static str, topic: String, payload: Vec<u8>) {
    if !s.sendable(kind, &topic, &payload) {
        return; // never retained: it would be re-sent, and refused, on every reconnect
    }
    s.retained.lock().unwrap().insert(topic.clone(), payload.clone());
    if s.connected.load(Ordering::Relaxed) && s.client.try_publish(topic, s.qos, true, payload).is_err() {
        s.publish_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Re-subscribes and re-sends everything retained after a (re)connect.
fn resync(s: &Shared) {
    let mut subs = vec![format!("{}/+/enabled/set", s.base), format!("{}/+/+/threshold/set", s.base)];
    if let Some(p) = &s.discovery_prefix {
        subs.push(format!("{p}/status"));
    }
    for t in subs {
        let _ = s.client.try_subscribe(t, QoS::AtLeastOnce);
    }
    let mut sends = vec![(format!("{}/availability", s.base), ONLINE.as_bytes().to_vec())];
    sends.extend(s.clear.iter().map(|t| (t.clone(), Vec::new())));
    sends.extend(s.discovery.iter().filter(|(t, p)| fits(s.max_packet_bytes, t, p)).cloned());
    sends.extend(s.retained.lock().unwrap().iter().map(|(t, p)| (t.clone(), p.clone())));
    for (topic, payload) in sends {
        if s.client.try_publish(topic, QoS::AtLeastOnce, true, payload).is_err() {
            s.publish_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn publisher(s: Arc<Shared>, queue: Arc<DropQueue<Output>>, pending_cap: usize) {
    let mut seen_resync = 0u64;
    let mut pending: VecDeque<(String, Vec<u8>)> = VecDeque::new();
    let events_topic = format!("{}/events", s.base);
    let mut resynced_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = queue.wait() => {}
            _ = s.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let connected = s.connected.load(Ordering::Relaxed);
        let r = s.resync.load(Ordering::Relaxed);
        if connected && r != seen_resync {
            seen_resync = r;
            resync(&s);
            resynced_at = Some(std::time::Instant::now());
        }
        if !connected {
            resynced_at = None;
        }
        // connected for a while after a resync: the plan went out, record it
        if resynced_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
            if let Some((state, record)) = s.record.lock().unwrap().take() {
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = state.write(RECORD_FILE, RECORD_FORMAT, RECORD_VERSION, &record) {
                        warn!("{e} (cameras or labels removed later may stay in Home Assistant)");
                    }
                });
            }
        }
        while let Some(out) = queue.pop() {
            let (kind, topic, payload, retain) = match out {
                Output::State { camera, state } => {
                    ("state", format!("{}/{camera}/state", s.base), serde_json::to_vec(&*state).expect("state serializes"), true)
                }
                Output::Label { camera, label, on } => ("label", format!("{}/{camera}/{label}", s.base), on_off(on).into(), true),
                Output::Status { camera, online } => {
                    ("status", format!("{}/{camera}/status", s.base), if online { ONLINE } else { OFFLINE }.into(), true)
                }
                Output::Threshold { camera, label, on } => {
                    ("control", format!("{}/{camera}/{label}/threshold", s.base), fmt_threshold(on).into_bytes(), true)
                }
                Output::Snapshot { camera, label, jpeg } => ("snapshot", format!("{}/{camera}/{label}/snapshot", s.base), jpeg, true),
                Output::Event(e) => ("event", events_topic.clone(), serde_json::to_vec(&e).expect("event serializes"), false),
            };
            if retain {
                publish_retained(&s, kind, topic, payload);
            } else if s.sendable(kind, &topic, &payload) {
                pending.push_back((topic, payload));
                while pending.len() > pending_cap {
                    pending.pop_front();
                    queue.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if s.connected.load(Ordering::Relaxed) {
            while let Some((topic, payload)) = pending.pop_front() {
                if s.client.try_publish(&topic, QoS::AtLeastOnce, false, payload.clone()).is_err() {
                    // rumqttc's channel is full: keep it for the next round
                    pending.push_front((topic, payload));
                    break;
                }
            }
        }
    }
}
