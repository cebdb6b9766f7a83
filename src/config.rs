//! The daemon's configuration: TOML → validated types, once. Nothing downstream sees raw
//! strings: topics are slugs, durations are `Duration`s, thresholds are checked.
//!
//! Errors name the key path (`camera[0].label[1].off`) and, where it helps, a hint.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::labels::{Template, DEFAULT_TEMPLATE};
use crate::model::PrecisionChoice;

/// The configuration `siglipd run` uses without `--config`: the bundled sample images and
/// the tiny test model, relative to the current directory (the repository root).
pub const EMBEDDED_DEFAULT: &str = include_str!("../examples/siglipd.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config {path}: `{key}` {message}{}", hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Invalid { path: String, key: String, message: String, hint: Option<String> },
}

// ---- raw TOML shapes -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    model: RawModel,
    #[serde(default)]
    mqtt: Option<RawMqtt>,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    http: Option<RawHttp>,
    #[serde(default, rename = "camera")]
    cameras: Vec<RawCamera>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    bundle: PathBuf,
    #[serde(default = "default_precision")]
    precision: String,
    #[serde(default)]
    embeddings: Option<PathBuf>,
    #[serde(default)]
    threads: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_bind")]
    bind: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default = "yes")]
    demo: bool,
    #[serde(default = "default_upload_mib")]
    max_upload_mib: f64,
    #[serde(default = "default_max_labels")]
    max_labels: usize,
}

fn default_bind() -> String {
    "127.0.0.1:7860".into()
}

fn default_upload_mib() -> f64 {
    20.0
}

fn default_max_labels() -> usize {
    100
}

fn default_precision() -> String {
    "auto".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default = "default_qos")]
    qos: u8,
    #[serde(default = "default_keep_alive")]
    keep_alive_s: u64,
    #[serde(default = "yes")]
    discovery: bool,
    #[serde(default = "default_discovery_prefix")]
    discovery_prefix: String,
    #[serde(default = "default_max_packet_kib")]
    max_packet_kib: usize,
    #[serde(default = "default_queue")]
    queue: usize,
    #[serde(default)]
    snapshots: bool,
    #[serde(default)]
    tls: Option<RawTls>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_prefix() -> String {
    "siglipd".into()
}
fn default_qos() -> u8 {
    1
}
fn default_keep_alive() -> u64 {
    30
}
fn yes() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_max_packet_kib() -> usize {
    1024
}
fn default_queue() -> usize {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: PathBuf,
    #[serde(default)]
    client_cert: Option<PathBuf>,
    #[serde(default)]
    client_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default)]
    stdout: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    source: RawSource,
    #[serde(default)]
    interval_s: Option<f64>,
    #[serde(default)]
    max_fps: Option<f64>,
    #[serde(default)]
    crop: Vec<[f64; 4]>,
    #[serde(default)]
    change_gate: Option<RawChangeGate>,
    #[serde(default = "default_template")]
    template: String,
    #[serde(default)]
    smoothing: RawSmoothing,
    #[serde(default = "default_top_k")]
    top_k: usize,
    #[serde(default = "default_watchdog")]
    watchdog_s: f64,
    #[serde(rename = "label")]
    labels: Vec<RawLabel>,
}

fn default_template() -> String {
    DEFAULT_TEMPLATE.into()
}
fn default_top_k() -> usize {
    3
}
fn default_watchdog() -> f64 {
    10.0
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawSource {
    Files {
        path: String,
        #[serde(default, rename = "loop")]
        looping: bool,
    },
    Http {
        url: String,
        #[serde(default = "default_http_timeout")]
        timeout_s: f64,
    },
    Command {
        program: String,
        #[serde(default)]
        args: Vec<String>,
    },
    Camera {
        #[serde(default)]
        device: u32,
        #[serde(default = "default_min_side")]
        min_side: u32,
    },
}

fn default_http_timeout() -> f64 {
    5.0
}
fn default_min_side() -> u32 {
    224
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChangeGate {
    threshold: f64,
    #[serde(default = "default_force")]
    force_every_s: f64,
}

fn default_force() -> f64 {
    60.0
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawSmoothing {
    None,
    Mean { window: usize },
    NOfM { n: usize, m: usize },
}

impl Default for RawSmoothing {
    fn default() -> Self {
        RawSmoothing::None
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    name: String,
    #[serde(default)]
    prompts: Vec<String>,
    #[serde(default)]
    negative: Vec<String>,
    #[serde(default = "default_on")]
    on: f64,
    #[serde(default)]
    off: Option<f64>,
    #[serde(default)]
    hold_s: f64,
    #[serde(default)]
    cooldown_s: f64,
}

fn default_on() -> f64 {
    0.5
}

// ---- validated types ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (a path, or "embedded default"), for messages.
    pub origin: String,
    pub model: ModelConfig,
    pub mqtt: Option<MqttConfig>,
    pub stdout: bool,
    pub http: Option<HttpConfig>,
    pub cameras: Vec<CameraConfig>,
}

/// The web page + API started by `run` (only when the config has an `[http]` section).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: std::net::SocketAddr,
    pub token: Option<String>,
    /// Allow ad-hoc uploads on the page (loads the text tower on first use).
    pub demo: bool,
    pub max_upload_bytes: usize,
    pub max_labels: usize,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub bundle: PathBuf,
    pub precision: PrecisionChoice,
    pub embeddings: PathBuf,
    /// 0 = the `siglipd bench --save` choice, else every core.
    pub threads: usize,
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// `<prefix>/<node>`: the root of every topic siglipd publishes.
    pub base: String,
    pub node_id: String,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub qos: u8,
    pub keep_alive: Duration,
    pub discovery: Option<String>,
    pub max_packet_bytes: usize,
    pub queue: usize,
    pub snapshots: bool,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub ca_file: PathBuf,
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct CameraConfig {
    /// Slug used in topics and ids.
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub source: SourceConfig,
    pub interval: Duration,
    /// Regions as fractions of the frame (x, y, w, h); empty = the whole frame.
    pub crops: Vec<[f64; 4]>,
    pub change_gate: Option<ChangeGate>,
    pub smoothing: Smoothing,
    pub top_k: usize,
    pub watchdog: Duration,
    pub labels: Vec<LabelConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Files { pattern: String, looping: bool },
    Http { url: String, timeout: Duration },
    Command { program: String, args: Vec<String> },
    Camera { device: u32, min_side: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeGate {
    /// Mean absolute difference of a 32×32 grayscale thumbnail, 0..1.
    pub threshold: f64,
    pub force_every: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoothing {
    None,
    Mean { window: usize },
    NOfM { n: usize, m: usize },
}

#[derive(Debug, Clone)]
pub struct LabelConfig {
    pub name: String,
    /// Slug used in topics.
    pub slug: String,
    /// Prompts whose embeddings are averaged (an ensemble).
    pub prompts: Vec<String>,
    pub negative: Vec<String>,
    pub on: f32,
    pub off: f32,
    pub hold: Duration,
    pub cooldown: Duration,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_path_buf(), cause: e })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED_DEFAULT, "embedded default", Path::new(""))
    }

    /// Parses and validates; relative paths are resolved against `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::Parse { path: origin.into(), message: e.to_string() })?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner().to_string();
            let message = if key == "." { inner } else { format!("at `{key}`: {inner}") };
            ConfigError::Parse { path: origin.into(), message: message.trim_end().to_string() }
        })?;
        validate(raw, origin, base)
    }
}

fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v)
}

fn validate(raw: RawConfig, origin: &str, base: &Path) -> Result<Config, ConfigError> {
    let invalid = |key: String, message: String, hint: Option<&str>| ConfigError::Invalid {
        path: origin.into(),
        key,
        message,
        hint: hint.map(str::to_string),
    };
    let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };

    let precision = raw.model.precision.parse().map_err(|m| invalid("model.precision".into(), m, None))?;
    let bundle = resolve(&raw.model.bundle);
    let embeddings = match &raw.model.embeddings {
        Some(p) => resolve(p),
        None => {
            let name = bundle.file_name().and_then(|n| n.to_str()).unwrap_or("model");
            bundle.parent().unwrap_or(Path::new("")).join(format!("{name}.embeddings.json"))
        }
    };
    if raw.model.threads > 256 {
        return Err(invalid("model.threads".into(), format!("is {}, at most 256", raw.model.threads), Some("0 picks automatically")));
    }
    let model = ModelConfig { bundle, precision, embeddings, threads: raw.model.threads };

    let mqtt = match raw.mqtt {
        None => None,
        Some(m) => {
            let node_id = match m.node_id {
                Some(n) => n,
                None => gethostname::gethostname().to_string_lossy().into_owned(),
            };
            let node = slug(&node_id);
            if node.is_empty() {
                return Err(invalid("mqtt.node_id".into(), format!("{node_id:?} has no letters or digits"), None));
            }
            let prefix = m.prefix.trim_matches('/').to_string();
            if prefix.is_empty() || prefix.contains(['+', '#']) {
                return Err(invalid("mqtt.prefix".into(), format!("{:?} is not a usable topic prefix", m.prefix), Some("e.g. \"siglipd\"")));
            }
            if m.qos > 2 {
                return Err(invalid("mqtt.qos".into(), format!("is {}, must be 0, 1 or 2", m.qos), None));
            }
            if m.queue == 0 {
                return Err(invalid("mqtt.queue".into(), "must be at least 1".into(), None));
            }
            let credentials = match (m.username, m.password) {
                (Some(u), Some(p)) => Some((u, p)),
                (Some(u), None) => Some((u, String::new())),
                (None, Some(_)) => {
                    return Err(invalid("mqtt.password".into(), "is set without mqtt.username".into(), None))
                }
                (None, None) => None,
            };
            let tls = match m.tls {
                None => None,
                Some(t) => {
                    let ca = resolve(&t.ca_file);
                    if !ca.is_file() {
                        return Err(invalid("mqtt.tls.ca_file".into(), format!("{} does not exist", ca.display()), None));
                    }
                    let client_auth = match (t.client_cert, t.client_key) {
                        (Some(c), Some(k)) => {
                            for (key, p) in [("mqtt.tls.client_cert", &c), ("mqtt.tls.client_key", &k)] {
                                if !resolve(p).is_file() {
                                    return Err(invalid(key.into(), format!("{} does not exist", resolve(p).display()), None));
                                }
                            }
                            Some((resolve(&c), resolve(&k)))
                        }
                        (None, None) => None,
                        _ => {
                            return Err(invalid(
                                "mqtt.tls".into(),
                                "needs both client_cert and client_key, or neither".into(),
                                None,
                            ))
                        }
                    };
                    Some(TlsConfig { ca_file: ca, client_auth })
                }
            };
            Some(MqttConfig {
                host: m.host,
                port: m.port,
                base: format!("{prefix}/{node}"),
                client_id: m.client_id.unwrap_or_else(|| format!("siglipd-{node}")),
                node_id: node,
                credentials,
                qos: m.qos,
                keep_alive: Duration::from_secs(m.keep_alive_s.max(5)),
                discovery: m.discovery.then(|| m.discovery_prefix.trim_matches('/').to_string()),
                max_packet_bytes: m.max_packet_kib.max(16) * 1024,
                queue: m.queue,
                snapshots: m.snapshots,
                tls,
            })
        }
    };

    if raw.cameras.is_empty() {
        return Err(invalid("camera".into(), "is empty: configure at least one [[camera]]".into(), Some("see examples/siglipd.toml")));
    }
    let mut ids = HashSet::new();
    let mut cameras = Vec::new();
    for (ci, c) in raw.cameras.into_iter().enumerate() {
        let key = |k: &str| format!("camera[{ci}].{k}");
        let id = slug(&c.id);
        if id.is_empty() || id != c.id {
            return Err(invalid(key("id"), format!("{:?} must be lowercase letters, digits and _", c.id), Some(&format!("try {:?}", slug(&c.id)))));
        }
        if !ids.insert(id.clone()) {
            return Err(invalid(key("id"), format!("{id:?} is used by two cameras"), None));
        }
        let interval = match (c.interval_s, c.max_fps) {
            (Some(_), Some(_)) => return Err(invalid(key("interval_s"), "and max_fps are both set; pick one".into(), None)),
            (Some(s), None) if s > 0.0 && s.is_finite() => secs(s),
            (None, Some(f)) if f > 0.0 && f.is_finite() => secs(1.0 / f),
            (None, None) => Duration::from_secs(1),
            _ => return Err(invalid(key("interval_s"), "must be a positive number of seconds".into(), None)),
        };
        let source = match c.source {
            RawSource::Files { path, looping } => {
                let p = Path::new(&path);
                let pattern = if p.is_absolute() { path.clone() } else { base.join(p).display().to_string() };
                SourceConfig::Files { pattern, looping }
            }
            RawSource::Http { url, timeout_s } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(key("source.url"), format!("{url:?} is not an http(s) URL"), None));
                }
                SourceConfig::Http { url, timeout: secs(timeout_s.max(0.1)) }
            }
            RawSource::Command { program, args } => {
                if program.trim().is_empty() {
                    return Err(invalid(key("source.program"), "is empty".into(), Some("e.g. \"rpicam-vid\"")));
                }
                SourceConfig::Command { program, args }
            }
            RawSource::Camera { device, min_side } => SourceConfig::Camera { device, min_side },
        };
        for (ri, r) in c.crop.iter().enumerate() {
            let [x, y, w, h] = *r;
            let ok = r.iter().all(|v| v.is_finite()) && x >= 0.0 && y >= 0.0 && w > 0.0 && h > 0.0 && x + w <= 1.0 + 1e-9 && y + h <= 1.0 + 1e-9;
            if !ok {
                return Err(invalid(key(&format!("crop[{ri}]")), format!("{r:?} is not a region inside the frame"), Some("[x, y, width, height] as fractions of the frame, e.g. [0.5, 0.0, 0.5, 1.0]")));
            }
        }
        let change_gate = match c.change_gate {
            None => None,
            Some(g) if (0.0..=1.0).contains(&g.threshold) && g.force_every_s > 0.0 => {
                Some(ChangeGate { threshold: g.threshold, force_every: secs(g.force_every_s) })
            }
            Some(_) => return Err(invalid(key("change_gate"), "needs 0 <= threshold <= 1 and force_every_s > 0".into(), None)),
        };
        let smoothing = match c.smoothing {
            RawSmoothing::None => Smoothing::None,
            RawSmoothing::Mean { window } if window >= 1 => Smoothing::Mean { window },
            RawSmoothing::NOfM { n, m } if n >= 1 && n <= m => Smoothing::NOfM { n, m },
            _ => return Err(invalid(key("smoothing"), "needs window >= 1 (mean) or 1 <= n <= m (n_of_m)".into(), None)),
        };
        let template = Template::new(&c.template).map_err(|e| invalid(key("template"), e.to_string(), None))?;
        if c.labels.is_empty() {
            return Err(invalid(key("label"), "is empty: give the camera at least one [[camera.label]]".into(), None));
        }
        let mut slugs = HashSet::new();
        let mut labels = Vec::new();
        for (li, l) in c.labels.into_iter().enumerate() {
            let lkey = |k: &str| format!("camera[{ci}].label[{li}].{k}");
            let name = l.name.trim().to_string();
            let label_slug = slug(&name);
            if label_slug.is_empty() {
                return Err(invalid(lkey("name"), format!("{:?} needs at least one letter or digit", l.name), None));
            }
            if !slugs.insert(label_slug.clone()) {
                return Err(invalid(lkey("name"), format!("{name:?} has the same topic name ({label_slug}) as another label"), None));
            }
            if label_slug == "state" || label_slug == "status" || label_slug == "enabled" {
                return Err(invalid(lkey("name"), format!("{name:?} collides with the camera's {label_slug} topic"), Some("rename the label")));
            }
            let prompts = if l.prompts.is_empty() { vec![template.apply(&name)] } else { l.prompts };
            if let Some(p) = prompts.iter().chain(&l.negative).find(|p| p.trim().is_empty()) {
                return Err(invalid(lkey("prompts"), format!("has a blank prompt {p:?}"), None));
            }
            let off = l.off.unwrap_or((l.on - 0.1).max(0.0));
            if !(0.0..=1.0).contains(&l.on) || !(0.0..=1.0).contains(&off) || off > l.on {
                return Err(invalid(lkey("off"), format!("thresholds must satisfy 0 <= off ({off}) <= on ({}) <= 1", l.on), None));
            }
            if l.hold_s < 0.0 || l.cooldown_s < 0.0 {
                return Err(invalid(lkey("hold_s"), "hold_s and cooldown_s must not be negative".into(), None));
            }
            labels.push(LabelConfig {
                name,
                slug: label_slug,
                prompts,
                negative: l.negative,
                on: l.on as f32,
                off: off as f32,
                hold: secs(l.hold_s),
                cooldown: secs(l.cooldown_s),
            });
        }
        cameras.push(CameraConfig {
            name: c.name.unwrap_or_else(|| c.id.clone()),
            id,
            enabled: c.enabled,
            source,
            interval,
            crops: c.crop,
            change_gate,
            smoothing,
            top_k: c.top_k.max(1),
            watchdog: secs(c.watchdog_s.max(1.0)),
            labels,
        });
    }
    let http = match raw.http {
        None => None,
        Some(h) => {
            let bind: std::net::SocketAddr = h.bind.parse().map_err(|_| {
                invalid("http.bind".into(), format!("{:?} is not an address:port", h.bind), Some("e.g. \"127.0.0.1:7860\" or \"0.0.0.0:7860\""))
            })?;
            let token = match (h.token, h.token_file) {
                (Some(_), Some(_)) => return Err(invalid("http.token".into(), "and http.token_file are both set".into(), None)),
                (Some(t), None) => Some(t),
                (None, Some(f)) => {
                    let f = resolve(&f);
                    let t = std::fs::read_to_string(&f)
                        .map_err(|e| invalid("http.token_file".into(), format!("cannot read {}: {e}", f.display()), None))?;
                    Some(t)
                }
                (None, None) => None,
            }
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
            if !bind.ip().is_loopback() && token.is_none() {
                return Err(invalid(
                    "http.bind".into(),
                    format!("is {bind}, off this machine, without an access token"),
                    Some("set http.token or http.token_file; cameras are private"),
                ));
            }
            if !(h.max_upload_mib > 0.0 && h.max_upload_mib <= 1024.0) {
                return Err(invalid("http.max_upload_mib".into(), format!("is {}, must be in (0, 1024]", h.max_upload_mib), None));
            }
            if h.max_labels == 0 {
                return Err(invalid("http.max_labels".into(), "must be at least 1".into(), None));
            }
            Some(HttpConfig {
                bind,
                token,
                demo: h.demo,
                max_upload_bytes: (h.max_upload_mib * 1024.0 * 1024.0) as usize,
                max_labels: h.max_labels,
            })
        }
    };
    Ok(Config { origin: origin.into(), model, mqtt, stdout: raw.output.stdout, http, cameras })
}

impl Config {
    /// Every distinct prompt (positive and negative) of every camera, for the text tower.
    pub fn all_prompts(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for c in &self.cameras {
            for l in &c.labels {
                for p in l.prompts.iter().chain(&l.negative) {
                    if seen.insert(p.clone()) {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[model]
bundle = "m"
[[camera]]
id = "door"
source = { kind = "files", path = "imgs" }
[[camera.label]]
name = "A Cat!"
"#;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, "test.toml", Path::new("/etc/siglipd"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.model.bundle, PathBuf::from("/etc/siglipd/m"));
        assert_eq!(c.model.precision, PrecisionChoice::Auto);
        let cam = &c.cameras[0];
        assert_eq!(cam.interval, Duration::from_secs(1));
        assert_eq!(cam.source, SourceConfig::Files { pattern: "/etc/siglipd/imgs".into(), looping: false });
        let l = &cam.labels[0];
        assert_eq!(l.slug, "a_cat");
        assert_eq!(l.prompts, vec!["This is a photo of A Cat!."]);
        assert!((l.on - 0.5).abs() < 1e-6 && (l.off - 0.4).abs() < 1e-6);
        assert!(c.mqtt.is_none());
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e = parse(&MIN.replace("name = \"A Cat!\"", "name = \"cat\"\nthreshold = 3")).unwrap_err().to_string();
        assert!(e.contains("camera[0].label[0]") || e.contains("camera.label"), "{e}");
        assert!(e.contains("unknown field `threshold`"), "{e}");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let e = parse(&MIN.replace("id = \"door\"", "id = \"door\"\ninterval_s = \"fast\"")).unwrap_err().to_string();
        assert!(e.contains("camera[0].interval_s"), "{e}");
    }

    #[test]
    fn semantic_errors_name_key_and_hint() {
        let e = parse(&MIN.replace("id = \"door\"", "id = \"Front Door\"")).unwrap_err().to_string();
        assert!(e.contains("`camera[0].id`") && e.contains("try \"front_door\""), "{e}");
        let e = parse(&MIN.replace("name = \"A Cat!\"", "name = \"cat\"\non = 0.3\noff = 0.6")).unwrap_err().to_string();
        assert!(e.contains("`camera[0].label[0].off`"), "{e}");
        let e = parse(&MIN.replace("kind = \"files\", path = \"imgs\"", "kind = \"webcam\"")).unwrap_err().to_string();
        assert!(e.contains("camera[0].source") && e.contains("webcam"), "{e}");
    }

    #[test]
    fn mqtt_topics_are_slugs() {
        let c = parse(&format!("{MIN}\n[mqtt]\nprefix = \"/home/\"\nnode_id = \"Pi 5\"\n")).unwrap();
        assert_eq!(c.mqtt.unwrap().base, "home/pi_5");
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default().unwrap();
        assert!(!c.cameras.is_empty());
    }
}
