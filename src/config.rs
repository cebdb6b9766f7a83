//! The daemon's configuration: TOML → validated types, once. Nothing downstream sees raw
//! strings: topics are slugs, durations are `Duration`s, thresholds are checked.
//!
//! Errors name the key path (`camera[0].label[1].off`) and, where it helps, a hint.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
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
    #[serde(default)]
    state: RawState,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default)]
    dir: Option<PathBuf>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawSmoothing {
    #[default]
    None,
    Mean {
        window: usize,
    },
    NOfM {
        n: usize,
        m: usize,
    },
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
    #[serde(default)]
    score: ScoreKind,
    #[serde(default)]
    examples: Option<String>,
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
    /// Run-time state (controls set over MQTT or the page, what was published): see `state`.
    pub state_dir: PathBuf,
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
    /// Which score the thresholds apply to (see [`ScoreKind`]).
    pub score: ScoreKind,
    /// An examples file (`siglipd examples export`) imported for this label at start.
    pub examples: Option<PathBuf>,
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.to_path_buf(), cause: e })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED_DEFAULT, "embedded default", Path::new(""))
    }

    /// Parses and validates; relative paths are resolved against `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse { path: origin.into(), message: e.to_string() })?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner().to_string();
            let message = if key == "." { inner } else { format!("at `{key}`: {inner}") };
            ConfigError::Parse { path: origin.into(), message: message.trim_end().to_string() }
        })?;
        validate(raw, origin, base)
    }
}

/// Everything `validate` needs to report and resolve: where the config came from and the
/// directory relative paths start in.
struct Ctx<'a> {
    origin: &'a str,
    base: &'a Path,
}

/// A number as a user wants to read it back: `1e300`, not 301 digits.
fn short(v: f64) -> String {
    if v.is_finite() && (v.abs() >= 1e9 || (v != 0.0 && v.abs() < 1e-6)) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// A topic prefix MQTT and Home Assistant can use: no wildcards, no empty level, no leading `$`
/// (brokers reserve `$SYS`), no spaces.
fn topic_prefix_problem(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        Some("is empty")
    } else if p.contains(['+', '#']) {
        Some("contains an MQTT wildcard (+ or #)")
    } else if p.split('/').any(str::is_empty) {
        Some("has an empty topic level (//)")
    } else if p.starts_with('$') {
        Some("starts with $, which brokers reserve ($SYS)")
    } else if p.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else {
        None
    }
}

/// Upper bound of every duration key: a month. Far beyond any sensible hold or timeout, far
/// below what `Duration` and `Instant` arithmetic can hold.
const MAX_SECONDS: f64 = 30.0 * 86_400.0;

impl Ctx<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>, hint: Option<&str>) -> ConfigError {
        ConfigError::Invalid { path: self.origin.into(), key: key.into(), message: message.into(), hint: hint.map(str::to_string) }
    }

    /// `~/…` → home; relative → against the config file's directory.
    fn resolve(&self, p: &Path) -> PathBuf {
        let p = &crate::host::expand_home(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A number of seconds: finite and within `[min, max]`, else an error naming the key and
    /// the unit. The one path from config numbers to `Duration` (TOML has `nan` and `inf`).
    fn seconds(&self, key: impl Into<String>, v: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
        if v.is_finite() && v >= min && v <= max {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(self.invalid(key, format!("is {} s, must be a number of seconds from {min} to {max}", short(v)), None))
        }
    }

    /// An integer within `[min, max]`.
    fn count(&self, key: impl Into<String>, v: u64, min: u64, max: u64, unit: &str) -> Result<u64, ConfigError> {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(self.invalid(key, format!("is {v}{unit}, must be from {min} to {max}{unit}"), None))
        }
    }
}

fn validate(raw: RawConfig, origin: &str, base: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx { origin, base };
    let model = validate_model(&ctx, raw.model)?;
    let mqtt = raw.mqtt.map(|m| validate_mqtt(&ctx, m)).transpose()?;
    if raw.cameras.is_empty() {
        return Err(ctx.invalid("camera", "is empty: configure at least one [[camera]]", Some("see examples/siglipd.toml")));
    }
    let mut cameras: Vec<CameraConfig> = Vec::new();
    for (ci, c) in raw.cameras.into_iter().enumerate() {
        let cam = validate_camera(&ctx, ci, c)?;
        if cameras.iter().any(|o| o.id == cam.id) {
            return Err(ctx.invalid(format!("camera[{ci}].id"), format!("{:?} is used by two cameras", cam.id), None));
        }
        if let Some(o) = cameras.iter().find(|o| o.name == cam.name) {
            // Home Assistant derives entity ids from the device name: two equal names give
            // `_2` suffixes that point at whichever camera registered second
            return Err(ctx.invalid(
                format!("camera[{ci}].name"),
                format!("{:?} is also the name of camera {:?}", cam.name, o.id),
                Some("give every camera its own name"),
            ));
        }
        cameras.push(cam);
    }
    let http = raw.http.map(|h| validate_http(&ctx, h)).transpose()?;
    let state_dir = validate_state(&ctx, raw.state)?;
    Ok(Config { origin: origin.into(), model, mqtt, stdout: raw.output.stdout, http, cameras, state_dir })
}

fn validate_model(ctx: &Ctx, m: RawModel) -> Result<ModelConfig, ConfigError> {
    let precision = m.precision.parse().map_err(|e: String| ctx.invalid("model.precision", e, None))?;
    let bundle = ctx.resolve(&m.bundle);
    let embeddings = match &m.embeddings {
        Some(p) => ctx.resolve(p),
        None => {
            let name = bundle.file_name().and_then(|n| n.to_str()).unwrap_or("model");
            bundle.parent().unwrap_or(Path::new("")).join(format!("{name}.embeddings.json"))
        }
    };
    if m.threads > 256 {
        return Err(ctx.invalid("model.threads", format!("is {}, at most 256", m.threads), Some("0 picks automatically")));
    }
    Ok(ModelConfig { bundle, precision, embeddings, threads: m.threads })
}

fn validate_mqtt(ctx: &Ctx, m: RawMqtt) -> Result<MqttConfig, ConfigError> {
    let node_id = match m.node_id {
        Some(n) => n,
        None => gethostname::gethostname().to_string_lossy().into_owned(),
    };
    let node = crate::ids::slug(&node_id)
        .ok_or_else(|| ctx.invalid("mqtt.node_id", format!("{node_id:?} has no letters or digits"), None))?;
    let prefix = m.prefix.trim_matches('/').to_string();
    if let Some(why) = topic_prefix_problem(&prefix) {
        return Err(ctx.invalid("mqtt.prefix", format!("{:?} {why}", m.prefix), Some("e.g. \"siglipd\"")));
    }
    if m.port == 0 {
        return Err(ctx.invalid("mqtt.port", "is 0, must be a TCP port from 1 to 65535", Some("1883, or 8883 for TLS")));
    }
    if m.qos > 2 {
        return Err(ctx.invalid("mqtt.qos", format!("is {}, must be 0, 1 or 2", m.qos), None));
    }
    ctx.count("mqtt.queue", m.queue as u64, 1, 1_000_000, " messages")?;
    // MQTT keep-alive is a 16-bit number of seconds; rumqttc refuses less than 5
    let keep_alive = ctx.count("mqtt.keep_alive_s", m.keep_alive_s, 5, 65_535, " s")?;
    // 16 KiB holds a discovery payload with a few labels; 256 MiB is MQTT's own limit
    let max_packet_kib = ctx.count("mqtt.max_packet_kib", m.max_packet_kib as u64, 16, 256 * 1024, " KiB")?;
    let credentials = match (m.username, m.password) {
        (Some(u), Some(p)) => Some((u, p)),
        (Some(u), None) => Some((u, String::new())),
        (None, Some(_)) => return Err(ctx.invalid("mqtt.password", "is set without mqtt.username", None)),
        (None, None) => None,
    };
    let tls = m.tls.map(|t| validate_tls(ctx, t)).transpose()?;
    let discovery = m.discovery.then(|| m.discovery_prefix.trim_matches('/').to_string());
    if let Some(why) = discovery.as_deref().and_then(topic_prefix_problem) {
        return Err(ctx.invalid(
            "mqtt.discovery_prefix",
            format!("{:?} {why}", m.discovery_prefix),
            Some("Home Assistant's default is \"homeassistant\""),
        ));
    }
    Ok(MqttConfig {
        host: m.host,
        port: m.port,
        base: format!("{prefix}/{node}"),
        client_id: m.client_id.unwrap_or_else(|| format!("siglipd-{node}")),
        node_id: node,
        credentials,
        qos: m.qos,
        keep_alive: Duration::from_secs(keep_alive),
        discovery,
        max_packet_bytes: max_packet_kib as usize * 1024,
        queue: m.queue,
        snapshots: m.snapshots,
        tls,
    })
}

fn validate_tls(ctx: &Ctx, t: RawTls) -> Result<TlsConfig, ConfigError> {
    let ca = ctx.resolve(&t.ca_file);
    if !ca.is_file() {
        return Err(ctx.invalid("mqtt.tls.ca_file", format!("{} does not exist", ca.display()), None));
    }
    let client_auth = match (t.client_cert, t.client_key) {
        (Some(c), Some(k)) => {
            for (key, p) in [("mqtt.tls.client_cert", &c), ("mqtt.tls.client_key", &k)] {
                if !ctx.resolve(p).is_file() {
                    return Err(ctx.invalid(key, format!("{} does not exist", ctx.resolve(p).display()), None));
                }
            }
            Some((ctx.resolve(&c), ctx.resolve(&k)))
        }
        (None, None) => None,
        _ => return Err(ctx.invalid("mqtt.tls", "needs both client_cert and client_key, or neither", None)),
    };
    Ok(TlsConfig { ca_file: ca, client_auth })
}

fn validate_camera(ctx: &Ctx, ci: usize, c: RawCamera) -> Result<CameraConfig, ConfigError> {
    let key = |k: &str| format!("camera[{ci}].{k}");
    let id = crate::ids::slug(&c.id).unwrap_or_default();
    if id.is_empty() || id != c.id {
        let hint = crate::ids::slug(&c.id).map(|s| format!("try {s:?}"));
        return Err(ctx.invalid(
            key("id"),
            format!("{:?} must be lowercase ASCII letters, digits and _ (it names topics)", c.id),
            hint.as_deref(),
        ));
    }
    let interval = match (c.interval_s, c.max_fps) {
        (Some(_), Some(_)) => return Err(ctx.invalid(key("interval_s"), "and max_fps are both set; pick one", None)),
        (Some(s), None) => ctx.seconds(key("interval_s"), s, 0.001, 86_400.0)?,
        (None, Some(f)) if (1.0 / 86_400.0..=1000.0).contains(&f) => Duration::from_secs_f64(1.0 / f),
        (None, Some(f)) => {
            return Err(ctx.invalid(key("max_fps"), format!("is {f}, must be a rate from 1/86400 to 1000 frames per second"), None))
        }
        (None, None) => Duration::from_secs(1),
    };
    let source = validate_source(ctx, ci, c.source)?;
    for (ri, r) in c.crop.iter().enumerate() {
        let [x, y, w, h] = *r;
        // at least 1 % of the frame each way: smaller would be a few pixels of any camera
        let ok = r.iter().all(|v| v.is_finite())
            && x >= 0.0
            && y >= 0.0
            && w >= 0.01
            && h >= 0.01
            && x + w <= 1.0 + 1e-9
            && y + h <= 1.0 + 1e-9;
        if !ok {
            return Err(ctx.invalid(
                key(&format!("crop[{ri}]")),
                format!("{r:?} is not a region inside the frame"),
                Some("[x, y, width, height] as fractions of the frame, e.g. [0.5, 0.0, 0.5, 1.0]"),
            ));
        }
    }
    let change_gate = match c.change_gate {
        None => None,
        Some(g) if (0.0..=1.0).contains(&g.threshold) => Some(ChangeGate {
            threshold: g.threshold,
            force_every: ctx.seconds(key("change_gate.force_every_s"), g.force_every_s, 0.001, MAX_SECONDS)?,
        }),
        Some(g) => {
            return Err(ctx.invalid(
                key("change_gate.threshold"),
                format!("is {}, must be from 0 to 1 (mean absolute difference of a thumbnail)", g.threshold),
                None,
            ))
        }
    };
    // windows hold one score per frame: bounded so a typo cannot grow memory without end
    let smoothing = match c.smoothing {
        RawSmoothing::None => Smoothing::None,
        RawSmoothing::Mean { window } if (1..=1000).contains(&window) => Smoothing::Mean { window },
        RawSmoothing::NOfM { n, m } if n >= 1 && n <= m && m <= 1000 => Smoothing::NOfM { n, m },
        _ => return Err(ctx.invalid(key("smoothing"), "needs 1 <= window <= 1000 (mean) or 1 <= n <= m <= 1000 (n_of_m)", None)),
    };
    let template = Template::new(&c.template).map_err(|e| ctx.invalid(key("template"), e.to_string(), None))?;
    if c.labels.is_empty() {
        return Err(ctx.invalid(key("label"), "is empty: give the camera at least one [[camera.label]]", None));
    }
    let mut labels: Vec<LabelConfig> = Vec::new();
    for (li, l) in c.labels.into_iter().enumerate() {
        let label = validate_label(ctx, ci, li, l, &template)?;
        if let Some(o) = labels.iter().find(|o| o.slug == label.slug) {
            return Err(ctx.invalid(
                format!("camera[{ci}].label[{li}].name"),
                format!("{:?} has the same topic name ({}) as label {:?}", label.name, label.slug, o.name),
                Some("rename one of them"),
            ));
        }
        labels.push(label);
    }
    let top_k = ctx.count(key("top_k"), c.top_k as u64, 1, 1000, "")? as usize;
    Ok(CameraConfig {
        name: c.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| c.id.clone()),
        id,
        enabled: c.enabled,
        source,
        interval,
        crops: c.crop,
        change_gate,
        smoothing,
        top_k,
        watchdog: ctx.seconds(key("watchdog_s"), c.watchdog_s, 1.0, 86_400.0)?,
        labels,
    })
}

fn validate_source(ctx: &Ctx, ci: usize, s: RawSource) -> Result<SourceConfig, ConfigError> {
    let key = |k: &str| format!("camera[{ci}].source.{k}");
    Ok(match s {
        RawSource::Files { path, looping } => {
            let p = &crate::host::expand_home(Path::new(&path));
            let pattern = if p.is_absolute() { p.display().to_string() } else { ctx.base.join(p).display().to_string() };
            SourceConfig::Files { pattern, looping }
        }
        RawSource::Http { url, timeout_s } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ctx.invalid(key("url"), format!("{url:?} is not an http(s) URL"), None));
            }
            SourceConfig::Http { url, timeout: ctx.seconds(key("timeout_s"), timeout_s, 0.1, 300.0)? }
        }
        RawSource::Command { program, args } => {
            if program.trim().is_empty() {
                return Err(ctx.invalid(key("program"), "is empty", Some("e.g. \"rpicam-vid\"")));
            }
            SourceConfig::Command { program, args }
        }
        RawSource::Camera { device, min_side } => {
            ctx.count(key("min_side"), min_side as u64, 16, 8192, " px")?;
            SourceConfig::Camera { device, min_side }
        }
    })
}

/// Topic levels a camera publishes itself; a label slug equal to one would share its topic.
const RESERVED_LABEL_SLUGS: [&str; 4] = ["state", "status", "enabled", "label"];

/// Which score a label's thresholds apply to (`score = …` in a `[[camera.label]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreKind {
    /// SigLIP's sigmoid score of the prompts (arXiv:2303.15343): the default.
    #[default]
    ZeroShot,
    /// The probability from the label's model fitted on marked examples (`teach`); the
    /// zero-shot score until the label has enough examples of each kind.
    Calibrated,
    /// No prompt: the fitted model on the examples alone ("our car" against any car). No
    /// score, and never ON, until the label has enough examples of each kind.
    Examples,
}

impl ScoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZeroShot => "zero-shot",
            Self::Calibrated => "calibrated",
            Self::Examples => "examples",
        }
    }
}

/// Longest label name and prompt accepted: the text tower reads 64 tokens, far fewer.
use crate::labels::MAX_LABEL_CHARS;

fn validate_label(ctx: &Ctx, ci: usize, li: usize, l: RawLabel, template: &Template) -> Result<LabelConfig, ConfigError> {
    let lkey = |k: &str| format!("camera[{ci}].label[{li}].{k}");
    let name = l.name.trim().to_string();
    if name.chars().count() > MAX_LABEL_CHARS {
        return Err(ctx.invalid(
            lkey("name"),
            format!("is {} characters, at most {MAX_LABEL_CHARS}", name.chars().count()),
            Some("long descriptions belong in prompts"),
        ));
    }
    let slug = crate::ids::slug(&name).ok_or_else(|| ctx.invalid(lkey("name"), format!("{:?} is blank", l.name), None))?;
    if RESERVED_LABEL_SLUGS.contains(&slug.as_str()) {
        return Err(ctx.invalid(
            lkey("name"),
            format!("{name:?} collides with the camera's {slug} topic"),
            Some("rename the label, e.g. \"door state\""),
        ));
    }
    let prompts = match l.score {
        ScoreKind::Examples if !l.prompts.is_empty() || !l.negative.is_empty() => {
            let k = if l.prompts.is_empty() { "negative" } else { "prompts" };
            return Err(ctx.invalid(
                lkey(k),
                "is set, but score = \"examples\" scores the label from its marked examples alone",
                Some(if k == "prompts" {
                    "drop the prompts, or use score = \"calibrated\" to combine them with examples"
                } else {
                    "drop the negative prompts, or use score = \"calibrated\" to combine prompts with examples"
                }),
            ));
        }
        ScoreKind::Examples => Vec::new(),
        _ if l.prompts.is_empty() => vec![template.apply(&name)],
        _ => l.prompts,
    };
    if let Some(p) = prompts.iter().find(|p| p.trim().is_empty()) {
        return Err(ctx.invalid(lkey("prompts"), format!("has a blank prompt {p:?}"), None));
    }
    if let Some(p) = l.negative.iter().find(|p| p.trim().is_empty()) {
        return Err(ctx.invalid(lkey("negative"), format!("has a blank prompt {p:?}"), None));
    }
    if let Some(p) = prompts.iter().chain(&l.negative).find(|p| p.chars().count() > 4 * MAX_LABEL_CHARS) {
        return Err(ctx.invalid(
            lkey("prompts"),
            format!("has a prompt of {} characters, at most {}", p.chars().count(), 4 * MAX_LABEL_CHARS),
            Some("the model reads only the first 64 tokens"),
        ));
    }
    let ok = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    if !ok(l.on) {
        return Err(ctx.invalid(lkey("on"), format!("is {}, must be a score from 0 to 1", l.on), None));
    }
    let off = l.off.unwrap_or((l.on - 0.1).max(0.0));
    if !ok(off) || off > l.on {
        return Err(ctx.invalid(lkey("off"), format!("thresholds must satisfy 0 <= off ({off}) <= on ({}) <= 1", l.on), None));
    }
    let examples = l.examples.map(|p| {
        let p = crate::host::expand_home(Path::new(&p));
        if p.is_absolute() {
            p
        } else {
            ctx.base.join(p)
        }
    });
    Ok(LabelConfig {
        name,
        score: l.score,
        examples,
        slug,
        prompts,
        negative: l.negative,
        on: l.on as f32,
        off: off as f32,
        hold: ctx.seconds(lkey("hold_s"), l.hold_s, 0.0, MAX_SECONDS)?,
        cooldown: ctx.seconds(lkey("cooldown_s"), l.cooldown_s, 0.0, MAX_SECONDS)?,
    })
}

fn validate_http(ctx: &Ctx, h: RawHttp) -> Result<HttpConfig, ConfigError> {
    let bind: std::net::SocketAddr = h.bind.parse().map_err(|_| {
        ctx.invalid("http.bind", format!("{:?} is not an address:port", h.bind), Some("e.g. \"127.0.0.1:7860\" or \"0.0.0.0:7860\""))
    })?;
    let token = match (h.token, h.token_file) {
        (Some(_), Some(_)) => return Err(ctx.invalid("http.token", "and http.token_file are both set", None)),
        (Some(t), None) => Some(t),
        (None, Some(f)) => {
            let f = ctx.resolve(&f);
            let t = std::fs::read_to_string(&f)
                .map_err(|e| ctx.invalid("http.token_file", format!("cannot read {}: {e}", f.display()), None))?;
            Some(t)
        }
        (None, None) => None,
    }
    .map(|t| t.trim().to_string())
    .filter(|t| !t.is_empty());
    if !bind.ip().is_loopback() && token.is_none() {
        return Err(ctx.invalid(
            "http.bind",
            format!("is {bind}, off this machine, without an access token"),
            Some("set http.token or http.token_file; cameras are private"),
        ));
    }
    if !(h.max_upload_mib >= 1.0 / 1024.0 && h.max_upload_mib <= 1024.0) {
        return Err(ctx.invalid(
            "http.max_upload_mib",
            format!("is {} MiB, must be from 1/1024 (1 KiB) to 1024", short(h.max_upload_mib)),
            None,
        ));
    }
    ctx.count("http.max_labels", h.max_labels as u64, 1, 1000, " labels")?;
    Ok(HttpConfig {
        bind,
        token,
        demo: h.demo,
        max_upload_bytes: (h.max_upload_mib * 1024.0 * 1024.0) as usize,
        max_labels: h.max_labels,
    })
}

/// The state directory: `[state] dir`, else systemd's `$STATE_DIRECTORY` (set by the unit's
/// `StateDirectory=`; the first of a `:`-separated list), else `$XDG_STATE_HOME/siglipd`, else
/// `~/.local/state/siglipd`.
fn validate_state(ctx: &Ctx, s: RawState) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = s.dir {
        return Ok(ctx.resolve(&dir));
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) =
        std::env::var("STATE_DIRECTORY").ok().and_then(|v| v.split(':').next().filter(|s| !s.is_empty()).map(PathBuf::from))
    {
        return Ok(d);
    }
    if let Some(x) = env("XDG_STATE_HOME") {
        return Ok(x.join("siglipd"));
    }
    if let Some(h) = env("HOME") {
        return Ok(h.join(".local/state/siglipd"));
    }
    Err(ctx.invalid(
        "state.dir",
        "is not set and neither $STATE_DIRECTORY, $XDG_STATE_HOME nor $HOME is",
        Some("set [state] dir = \"/var/lib/siglipd\""),
    ))
}

impl Config {
    /// A camera `camera` has a label with topic id `slug`.
    pub fn has_label(&self, camera: &str, slug: &str) -> bool {
        self.cameras.iter().any(|c| c.id == camera && c.labels.iter().any(|l| l.slug == slug))
    }

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

    /// The README promises that examples/siglipd.toml documents every key: each key the raw
    /// types accept must appear in it (as a setting or a commented example).
    #[test]
    fn the_example_config_documents_every_key() {
        let keys = [
            "[model]",
            "bundle =",
            "precision =",
            "threads =",
            "embeddings =",
            "[output]",
            "stdout =",
            "[state]",
            "dir =",
            "[http]",
            "bind =",
            "token_file =",
            "demo =",
            "max_upload_mib =",
            "max_labels =",
            "[mqtt]",
            "host =",
            "port =",
            "prefix =",
            "node_id =",
            "client_id =",
            "username =",
            "password =",
            "qos =",
            "keep_alive_s =",
            "discovery =",
            "discovery_prefix =",
            "max_packet_kib =",
            "queue =",
            "snapshots =",
            "[mqtt.tls]",
            "ca_file =",
            "client_cert =",
            "client_key =",
            "[[camera]]",
            "id =",
            "name =",
            "enabled =",
            "kind = \"files\"",
            "loop =",
            "kind = \"http\"",
            "timeout_s =",
            "kind = \"command\"",
            "program =",
            "args =",
            "kind = \"camera\"",
            "device =",
            "min_side =",
            "interval_s =",
            "max_fps =",
            "crop =",
            "change_gate =",
            "force_every_s =",
            "smoothing =",
            "n_of_m",
            "template =",
            "top_k =",
            "watchdog_s =",
            "[[camera.label]]",
            "prompts =",
            "negative =",
            "on =",
            "off =",
            "hold_s =",
            "cooldown_s =",
        ];
        let missing: Vec<&str> = keys.into_iter().filter(|k| !EMBEDDED_DEFAULT.contains(k)).collect();
        assert!(missing.is_empty(), "examples/siglipd.toml does not document {missing:?}");
    }

    #[test]
    fn every_number_is_checked_not_clamped_or_panicking() {
        for (edit, key) in [
            ("hold_s = nan", "camera[0].label[0].hold_s"),
            ("hold_s = 1e300", "camera[0].label[0].hold_s"),
            ("cooldown_s = -1", "camera[0].label[0].cooldown_s"),
            ("on = nan", "camera[0].label[0].on"),
        ] {
            let e = parse(&MIN.replace("name = \"A Cat!\"", &format!("name = \"cat\"\n{edit}"))).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("must"), "{edit}: {e}");
        }
        for (edit, key) in [
            ("watchdog_s = 0.5", "camera[0].watchdog_s"),
            ("max_fps = inf", "camera[0].max_fps"),
            ("interval_s = -1", "camera[0].interval_s"),
            ("top_k = 0", "camera[0].top_k"),
            ("change_gate = { threshold = 0.1, force_every_s = nan }", "force_every_s"),
            ("smoothing = { kind = \"mean\", window = 100000000 }", "camera[0].smoothing"),
            ("source = { kind = \"http\", url = \"http://x\", timeout_s = 0 }", "source.timeout_s"),
        ] {
            let text = MIN.replace(
                "source = { kind = \"files\", path = \"imgs\" }",
                if edit.starts_with("source") { edit } else { "source = { kind = \"files\", path = \"imgs\" }" },
            );
            let text =
                if edit.starts_with("source") { text } else { text.replace("id = \"door\"", &format!("id = \"door\"\n{edit}")) };
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(key), "{edit}: {e}");
        }
        for (edit, key) in
            [("keep_alive_s = 1", "mqtt.keep_alive_s"), ("max_packet_kib = 1", "mqtt.max_packet_kib"), ("queue = 0", "mqtt.queue")]
        {
            let e = parse(&format!("{MIN}\n[mqtt]\n{edit}\n")).unwrap_err().to_string();
            assert!(e.contains(key), "{edit}: {e}");
        }
    }

    #[test]
    fn errors_name_the_key_that_is_wrong() {
        let e = parse(&MIN.replace("name = \"A Cat!\"", "name = \"cat\"\non = 1.5")).unwrap_err().to_string();
        assert!(e.contains("label[0].on`"), "{e}");
        let e = parse(&MIN.replace("name = \"A Cat!\"", "name = \"cat\"\nnegative = [\"\"]")).unwrap_err().to_string();
        assert!(e.contains("label[0].negative`"), "{e}");
        let e = parse(&MIN.replace("name = \"A Cat!\"", "name = \"cat\"\nhold_s = 1e300")).unwrap_err().to_string();
        assert!(e.contains("is 1e300 s"), "{e}");
        for (mqtt, key) in [
            ("port = 0", "mqtt.port"),
            ("prefix = \"$SYS\"", "mqtt.prefix"),
            ("prefix = \"my home\"", "mqtt.prefix"),
            ("prefix = \"a//b\"", "mqtt.prefix"),
            ("discovery_prefix = \"home assistant\"", "mqtt.discovery_prefix"),
        ] {
            let e = parse(&format!("{MIN}\n[mqtt]\n{mqtt}\n")).unwrap_err().to_string();
            assert!(e.contains(key), "{mqtt}: {e}");
        }
        let e = parse(&MIN.replace("id = \"door\"", "id = \"door\"\ncrop = [[0.0, 0.0, 1e-300, 1e-300]]")).unwrap_err().to_string();
        assert!(e.contains("crop[0]"), "{e}");
        let e = parse(&format!("{MIN}\n[http]\nmax_upload_mib = 1e-300\n")).unwrap_err().to_string();
        assert!(e.contains("http.max_upload_mib"), "{e}");
    }

    #[test]
    fn names_in_any_script_and_clashes() {
        let c = parse(&MIN.replace("A Cat!", "собака")).unwrap();
        assert_eq!(c.cameras[0].labels[0].name, "собака");
        assert!(c.cameras[0].labels[0].slug.starts_with("sobaka_"));
        let two = format!("{MIN}[[camera.label]]\nname = \"a cat\"\n");
        let e = parse(&two).unwrap_err().to_string();
        assert!(e.contains("same topic name (a_cat)"), "{e}");
        let e = parse(&MIN.replace("A Cat!", "Status")).unwrap_err().to_string();
        assert!(e.contains("collides with the camera's status topic"), "{e}");
        let dup = format!("{MIN}[[camera]]\nid = \"yard\"\nname = \"door\"\nsource = {{ kind = \"files\", path = \"x\" }}\n[[camera.label]]\nname = \"cat\"\n");
        let e = parse(&dup).unwrap_err().to_string();
        assert!(e.contains("camera[1].name") && e.contains("also the name of camera"), "{e}");
    }

    proptest::proptest! {
        /// Any text: an error or a config, never a panic (the config parser's fuzz property).
        #[test]
        fn any_text_parses_or_errors(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        /// Any numbers in every numeric key: an error or a config, never a panic.
        #[test]
        fn any_numbers_parse_or_error(
            a in proptest::num::f64::ANY, b in proptest::num::f64::ANY, c in proptest::num::f64::ANY,
            d in proptest::num::f64::ANY, e in proptest::num::f64::ANY, n in 0u64..u64::MAX,
        ) {
            let toml = |v: f64| if v.is_nan() { "nan".to_string() } else if v.is_infinite() { if v > 0.0 { "inf".into() } else { "-inf".into() } } else { format!("{v:e}") };
            let text = format!(
                "[model]\nbundle = \"m\"\n[mqtt]\nkeep_alive_s = {n}\nmax_packet_kib = {n}\n[[camera]]\nid = \"d\"\nsource = {{ kind = \"http\", url = \"http://x\", timeout_s = {} }}\nmax_fps = {}\nwatchdog_s = {}\nchange_gate = {{ threshold = {}, force_every_s = {} }}\n[[camera.label]]\nname = \"c\"\non = {}\noff = {}\nhold_s = {}\ncooldown_s = {}\n",
                toml(a), toml(b), toml(c), toml(d), toml(e), toml(a), toml(b), toml(c), toml(e)
            );
            let _ = parse(&text);
        }
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default().unwrap();
        assert!(!c.cameras.is_empty());
    }
}
