//! The HTTP server: the demo page (upload an image, type labels, see scores) and a JSON API.
//!
//! Invariants: inference runs on the classifier's own thread, never on the async runtime; at
//! most one classification runs at a time and at most `queue` wait (503 + Retry-After beyond
//! that); bodies, decoded pixels, label counts and lengths and the template are bounded, so a
//! request's work is bounded by what the model can use; a non-loopback bind requires a token.
//! Connections are bounded and timed out in `server`.
//!
//! HTTP as RFC 9110 has it: media types and auth schemes compare case-insensitively; the token
//! is accepted as `Authorization: Bearer <token>` or as the password of Basic auth (Home
//! Assistant's Generic Camera can send only Basic or Digest), compared in constant time; a 401
//! carries `WWW-Authenticate`. No CORS headers: the API answers same-origin pages only; a
//! dashboard on another origin shows `/api/cameras/<id>/frame.jpg` in an `<img>` (no CORS
//! needed) or goes through its own backend (documented in the README).
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tracing::info;

mod server;
pub use server::{serve_connections, ConnLimits};

use crate::classify::LabelScore;
use crate::control::Controls;
use crate::engine::{AdhocError, Engine};
use crate::labels::{check_labels, parse_list, LabelError, Template, DEFAULT_TEMPLATE};
use crate::live::{CameraView, Histogram, Live, LiveCamera};
use crate::model::preprocess::{self, ImageError};
use crate::model::{Precision, PrecisionChoice, Tower};
use crate::source::{Doorbell, Payload};

mod b64;
mod teach;

const PAGE: &str = include_str!("page.html");

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload_bytes: usize,
    pub max_pixels: u64,
    pub max_labels: usize,
    /// Requests allowed to wait behind the running one.
    pub queue: usize,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_upload_bytes: 20 << 20, max_pixels: 40_000_000, max_labels: 100, queue: 4, timeout: Duration::from_secs(60) }
    }
}

/// A JSON error with its status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        r
    }
}

/// Extractor rejections as the API's JSON errors (axum answers them in plain text).
fn json_error(e: axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError(e.status(), format!("invalid JSON body: {}", e.body_text()))
}

fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError(e.status(), format!("invalid query: {}", e.body_text()))
}

fn path_error(e: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError(e.status(), format!("invalid path: {}", e.body_text()))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// One upload waiting for the model. Runs wherever the engine lives: the classifier's own
/// thread (`serve`) or the daemon's inference thread between frames (`run`).
pub enum Job {
    /// `POST /api/classify`.
    Classify(ClassifyJob),
    /// `POST /api/cameras/<id>/examples/image`: an image to embed as an example.
    Embed(teach::EmbedJob),
}

impl Job {
    pub fn run(self, engine: &mut Engine) {
        match self {
            Job::Classify(j) => j.run(engine),
            Job::Embed(j) => j.run(engine),
        }
    }
}

pub struct ClassifyJob {
    image: Vec<u8>,
    max_pixels: u64,
    labels: Vec<String>,
    template: Template,
    precision: Option<Precision>,
    reply: oneshot::Sender<Result<Vec<LabelScore>, ApiError>>,
}

impl ClassifyJob {
    fn run(self, engine: &mut Engine) {
        if self.reply.is_closed() {
            return; // the client gave up while waiting
        }
        let result = engine.classify_adhoc(&self.image, self.max_pixels, &self.labels, &self.template, self.precision).map_err(|e| {
            log_upload_failure(&e);
            match e {
                AdhocError::Image(ImageError::TooLarge { .. }) => ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
                AdhocError::Image(_) => bad(e.to_string()),
                AdhocError::Model(_) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        });
        let _ = self.reply.send(result);
    }
}

/// Upload failures are logged once per kind per process (info for the client's image, error
/// for the model), then at debug: a page user retrying a bad file must not flood the journal.
fn log_upload_failure(e: &AdhocError) {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let kind = match e {
        AdhocError::Image(i) => i.kind(),
        AdhocError::Model(_) => "model",
    };
    let first = {
        let mut seen = SEEN.lock().unwrap();
        let first = !seen.contains(&kind);
        if first {
            seen.push(kind);
        }
        first
    };
    match (first, e) {
        (true, AdhocError::Model(_)) => tracing::error!("upload failed in the model: {e} (further such failures are logged at debug)"),
        (true, _) => info!("upload refused ({kind}): {e} (further {kind} uploads are logged at debug)"),
        (false, _) => tracing::debug!("upload failed ({kind}): {e}"),
    }
}

/// The handlers' side of the model: a bounded channel to whichever thread owns the engine.
pub struct Classifier {
    tx: SyncSender<Job>,
    /// Wakes the daemon's inference thread when a job is queued (`run`).
    bell: Option<Arc<Doorbell>>,
    pub precisions: Vec<Precision>,
    pub default: Precision,
    pub model: String,
}

impl Classifier {
    /// `serve`: the engine (with its text tower, so /healthz means ready) gets its own thread.
    pub fn start(mut engine: Engine, limits: &Limits) -> anyhow::Result<Self> {
        anyhow::ensure!(
            engine.bundle.has_text(),
            "model bundle {} has no text tower: the page needs one to score typed labels",
            engine.bundle.dir.display()
        );
        let (me, rx) = Self::attach(&engine, limits, None);
        std::thread::Builder::new().name("http-classify".into()).spawn(move || {
            for job in rx {
                job.run(&mut engine);
            }
        })?;
        Ok(me)
    }

    /// Queues a job for the model: 503 when the queue is full.
    fn submit(&self, job: Job) -> Result<(), ApiError> {
        match self.tx.try_send(job) {
            Ok(()) => {
                if let Some(bell) = &self.bell {
                    bell.ring();
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "busy: too many images waiting for the model, try again shortly".into()))
            }
            Err(TrySendError::Disconnected(_)) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the classifier stopped".into())),
        }
    }

    /// `run`: jobs go to the daemon's inference thread, which owns `engine`.
    pub fn attach(engine: &Engine, limits: &Limits, bell: Option<Arc<Doorbell>>) -> (Self, Receiver<Job>) {
        let (tx, rx) = sync_channel::<Job>(limits.queue);
        let me = Self {
            tx,
            bell,
            precisions: engine.bundle.precisions(Tower::Vision),
            default: engine.precision,
            model: engine.bundle.manifest.source.clone(),
        };
        (me, rx)
    }
}

/// The server's own metrics; with the daemon's (`live::LiveMetrics`) and the connection
/// layer's in one registry, exposed as OpenMetrics text on `/metrics`.
struct Metrics {
    requests: Counter,
    rejected_busy: Counter,
    failed: Counter,
    latency: Histogram,
    registry: prometheus_client::registry::Registry,
}

impl Metrics {
    fn new(live: Option<&Arc<Live>>) -> Self {
        let (requests, rejected_busy, failed, latency) =
            (Counter::default(), Counter::default(), Counter::default(), crate::live::latency_histogram());
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("siglipd_http_classify_requests", "Classification requests received", requests.clone());
        registry.register("siglipd_http_classify_failed", "Classification requests answered with an error", failed.clone());
        registry.register(
            "siglipd_http_classify_busy",
            "Requests rejected with 503 because the queue was full",
            rejected_busy.clone(),
        );
        registry.register("siglipd_http_classify_seconds", "Time from upload to scores", latency.clone());
        registry.register_collector(Box::new(server::ServerMetrics));
        if let Some(live) = live {
            registry.register_collector(Box::new(crate::live::LiveMetrics(live.clone())));
        }
        Self { requests, rejected_busy, failed, latency, registry }
    }
}

type Counter = prometheus_client::metrics::counter::Counter;

/// Everything the router serves from.
#[derive(Clone)]
pub struct Api {
    /// None: uploads are off (`run` with `http.demo = false`, or a bundle without text tower).
    pub classifier: Option<Arc<Classifier>>,
    pub limits: Limits,
    pub token: Option<String>,
    /// The daemon's cameras (`run`); None for `serve`.
    pub live: Option<Arc<Live>>,
    pub controls: Option<Arc<Controls>>,
    /// Marked examples (`run` with a state directory); None for `serve`.
    pub examples: Option<Arc<std::sync::Mutex<crate::examples::ExampleStore>>>,
    /// Where a threshold set on the page is announced (MQTT, so Home Assistant shows it).
    pub sinks: Option<crate::sink::Sinks>,
}

#[derive(Clone)]
struct AppState {
    api: Api,
    metrics: Arc<Metrics>,
}

pub fn router(api: Api) -> Router {
    let body_limit = api.limits.max_upload_bytes + 64 * 1024; // multipart framing on top of the image
    let metrics = Arc::new(Metrics::new(api.live.as_ref()));
    let state = AppState { api, metrics };
    let protected = Router::new()
        .route("/api/info", get(info_handler))
        .route("/api/classify", post(classify_handler))
        .route("/api/cameras", get(cameras_handler))
        .route("/api/cameras/{id}/state", get(camera_state_handler))
        .route("/api/cameras/{id}/frame.jpg", get(camera_frame_handler))
        .route("/api/cameras/{id}/history", get(camera_history_handler))
        .merge(teach::routes())
        .route("/api/cameras/{id}/thresholds", post(threshold_handler))
        .route("/metrics", get(metrics_handler))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(healthz_handler))
        // browsers ask for it on every page load; answer instead of logging a 404
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(protected)
        // unknown paths and methods answer in the API's JSON error shape too
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint".into())
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn require_token(State(s): State<AppState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    if let Some(token) = &s.api.token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(presented_token);
        if !given.is_some_and(|g| token_matches(&g, token)) {
            let mut r = ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong access token (send `Authorization: Bearer <token>`, or Basic auth with the token as password)"
                    .into(),
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"siglipd\", Basic realm=\"siglipd\", charset=\"UTF-8\""),
            );
            return r;
        }
    }
    next.run(req).await
}

/// The token in an `Authorization` header: `Bearer <token>`, or `Basic base64(user:token)`
/// (any user name). Schemes are case-insensitive (RFC 9110 §11.1).
fn presented_token(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, password)| password.to_string());
    }
    None
}

/// Constant-time equality (the length may leak; the contents do not).
fn token_matches(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

async fn info_handler(State(s): State<AppState>) -> Json<serde_json::Value> {
    let c = s.api.classifier.as_deref();
    Json(json!({
        "precisions": c.map(|c| c.precisions.iter().map(|p| p.as_str()).collect::<Vec<_>>()).unwrap_or_default(),
        "default_precision": c.map(|c| c.default.as_str()),
        "model": c.map(|c| c.model.clone()),
        "uploads": c.is_some(),
        "cameras": s.api.live.as_ref().map(|l| l.cameras.len()).unwrap_or(0),
        "max_upload_bytes": s.api.limits.max_upload_bytes,
        "max_labels": s.api.limits.max_labels,
    }))
}

fn camera_view(s: &AppState, cam: &LiveCamera) -> CameraView {
    let enabled = s.api.controls.as_ref().and_then(|c| c.camera(&cam.id)).is_none_or(|c| c.enabled());
    cam.view(enabled)
}

async fn cameras_handler(State(s): State<AppState>) -> Json<Vec<CameraView>> {
    let list = match &s.api.live {
        Some(live) => live.cameras.iter().map(|c| camera_view(&s, c)).collect(),
        None => vec![],
    };
    Json(list)
}

fn find_camera(s: &AppState, id: &str) -> Result<Arc<LiveCamera>, ApiError> {
    s.api.live.as_ref().and_then(|l| l.camera(id).cloned()).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no camera {id:?}")))
}

/// Index of a camera's label given by display name or topic id; 404 naming both otherwise.
fn label_of(cam: &LiveCamera, label: &str) -> Result<usize, ApiError> {
    cam.label_index(label).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("camera {:?} has no label {label:?}", cam.id)))
}

async fn camera_state_handler(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<CameraView>, ApiError> {
    let cam = find_camera(&s, &id)?;
    Ok(Json(camera_view(&s, &cam)))
}

#[derive(Deserialize)]
struct HistoryQuery {
    /// Display name or topic id of the label.
    label: String,
    /// Unix seconds; default: everything kept (up to 24 h).
    #[serde(default)]
    since: Option<f64>,
}

/// `GET /api/cameras/<id>/history?label=…&since=…`.
#[derive(serde::Serialize)]
struct HistoryView {
    camera: String,
    label: String,
    /// The thresholds in force now (set over MQTT or the config), for the chart.
    on: Option<f32>,
    off: Option<f32>,
    points: Vec<crate::history::Point>,
}

async fn camera_history_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<axum::extract::Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryView>, ApiError> {
    let axum::extract::Query(q) = q.map_err(query_error)?;
    let cam = find_camera(&s, &id)?;
    let i = label_of(&cam, &q.label)?;
    let since = q.since.filter(|t| t.is_finite()).unwrap_or(f64::NEG_INFINITY);
    let points = cam.history.lock().unwrap()[i].since(since);
    let t = s.api.controls.as_ref().and_then(|c| c.camera(&id)).map(|c| c.thresholds(i));
    Ok(Json(HistoryView { camera: id, label: cam.label_name(i).to_string(), on: t.map(|t| t.on), off: t.map(|t| t.off), points }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdRequest {
    label: String,
    on: f32,
}

#[derive(serde::Serialize)]
struct ThresholdView {
    on: f32,
    off: f32,
}

/// `POST /api/cameras/<id>/thresholds {"label","on"}`: what the page's "apply" does — the same
/// as `…/threshold/set` over MQTT: `off` follows at the configured gap, the value persists in the
/// state directory and is published on `…/<label>/threshold` (Home Assistant's number follows).
async fn threshold_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    t: Result<Json<ThresholdRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ThresholdView>, ApiError> {
    let Json(t) = t.map_err(json_error)?;
    let cam = find_camera(&s, &id)?;
    let i = label_of(&cam, &t.label)?;
    if !(0.0..=1.0).contains(&t.on) {
        return Err(bad(format!("on is {}, must be from 0 to 1", t.on)));
    }
    let controls = s.api.controls.as_ref().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no cameras here".into()))?;
    let slug = cam.label_slugs[i].clone();
    let now = controls.set_threshold(&id, &slug, t.on).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no label {slug:?}")))?;
    info!(camera = %id, label = %slug, on = now.on, off = now.off, "threshold set on the web page");
    if let Some(sinks) = &s.api.sinks {
        sinks.send(crate::sink::Output::Threshold { camera: id, label: slug, on: now.on });
    }
    Ok(Json(ThresholdView { on: now.on, off: now.off }))
}

/// The last scored frame as JPEG. JPEG sources are passed through untouched; others are
/// encoded here, on a blocking thread, only when someone looks.
/// `GET /api/cameras/<id>/frame.jpg?t=<state ts>`: the frame scored at `t` while it is kept
/// (`live::KEPT_FRAMES`), else the latest; the page asks by the `ts` of the state it shows.
async fn camera_frame_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let cam = find_camera(&s, &id)?;
    let ts = q.as_deref().unwrap_or_default().split('&').find_map(|kv| kv.strip_prefix("t=")).and_then(|t| t.parse::<f64>().ok());
    let frame = cam.frame(ts).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("camera {id:?} has no scored frame yet")))?;
    let jpeg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let img = match &*frame {
            Payload::Encoded(bytes) if bytes.starts_with(&[0xFF, 0xD8]) => return Ok(bytes.clone()),
            Payload::Encoded(bytes) => preprocess::decode(bytes, "the last frame", u64::MAX).map_err(|e| e.to_string())?,
            Payload::Rgb(img) => img.clone(),
        };
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img).map_err(|e| e.to_string())?;
        Ok(out)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the frame: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], jpeg).into_response())
}

/// Ready when the model is loaded (always, once serving) and, for the daemon, the inference
/// loop turns and every source delivers.
async fn healthz_handler(State(s): State<AppState>) -> Response {
    let problems = s.api.live.as_ref().map(|l| l.problems(HEALTH_STALL)).unwrap_or_default();
    if problems.is_empty() {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", problems.join("; "))).into_response()
    }
}

/// The inference loop goes round at least every 200 ms when idle; a model run on a slow board
/// can take seconds. Longer than this without a turn means it is stuck.
pub const HEALTH_STALL: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    /// base64, as clients send it (wrapped, `data:` URL, …: see `b64.rs`)
    image: String,
    labels: LabelsField,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    precision: Option<String>,
}

/// `labels` in JSON: a comma-separated string (CSV quoting for commas inside a label) or an
/// array of labels.
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelsField {
    List(String),
    Array(Vec<String>),
}

impl LabelsField {
    fn parse(&self) -> Result<Vec<String>, LabelError> {
        match self {
            LabelsField::List(s) => parse_list(s),
            LabelsField::Array(a) => check_labels(a),
        }
    }
}

/// How long a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

struct Fields {
    image: Option<Vec<u8>>,
    /// One entry per `labels` field (each a comma-separated list).
    labels: Vec<String>,
    template: Option<String>,
    precision: Option<String>,
}

/// A multipart read failure: 413 when the body is over the limit, else 400.
fn upload_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(StatusCode::PAYLOAD_TOO_LARGE, "upload too large".into())
    } else {
        bad(format!("malformed upload: {e}"))
    }
}

async fn read_multipart(mut mp: Multipart) -> Result<Fields, ApiError> {
    let mut f = Fields { image: None, labels: vec![], template: None, precision: None };
    while let Some(field) = mp.next_field().await.map_err(upload_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(upload_error)?;
        let text = || String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("field {name:?} is not UTF-8 text")));
        // `labels` may repeat (Python requests sends a list that way); the others may not
        let once = |slot: bool| {
            if slot {
                Err(bad(format!("field {name:?} is given twice (send one)")))
            } else {
                Ok(())
            }
        };
        match name.as_str() {
            "image" => {
                once(f.image.is_some())?;
                f.image = Some(bytes.to_vec())
            }
            "labels" => f.labels.push(text()?),
            "template" => {
                once(f.template.is_some())?;
                f.template = Some(text()?)
            }
            "precision" => {
                once(f.precision.is_some())?;
                f.precision = Some(text()?)
            }
            other => return Err(bad(format!("unknown field {other:?} (expected image, labels, template, precision)"))),
        }
    }
    Ok(f)
}

/// The same shape as `siglipd classify --json` (f32 scores serialized as f32, like the CLI).
#[derive(serde::Serialize)]
pub struct ApiResult {
    image: &'static str,
    scores: Vec<LabelScore>,
}

async fn classify_handler(State(s): State<AppState>, headers: HeaderMap, req: Request) -> Result<Json<Vec<ApiResult>>, ApiError> {
    s.metrics.requests.inc();
    let result = classify_inner(&s, headers, req).await;
    if result.is_err() {
        s.metrics.failed.inc();
    }
    result
}

async fn classify_inner(s: &AppState, headers: HeaderMap, req: Request) -> Result<Json<Vec<ApiResult>>, ApiError> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // media types are case-insensitive (RFC 9110 §8.3.1); parameters follow a `;`
    let media = ctype.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let slow =
        || ApiError(StatusCode::REQUEST_TIMEOUT, format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()));
    let fields = if media == "multipart/form-data" {
        let mp = Multipart::from_request(req, &()).await.map_err(|e| bad(e.body_text()))?;
        (tokio::time::timeout(BODY_TIMEOUT, read_multipart(mp)).await.map_err(|_| slow())??, None)
    } else if media == "application/json" {
        let limit = b64::max_field_len(s.api.limits.max_upload_bytes) + 4096;
        let body = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(req.into_body(), limit))
            .await
            .map_err(|_| slow())?
            .map_err(|_| ApiError(StatusCode::PAYLOAD_TOO_LARGE, "request body too large".into()))?;
        let j: JsonRequest = serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let image = b64::decode_image_field(&j.image).map_err(|e| bad(e.to_string()))?;
        let labels = j.labels.parse().map_err(|e| bad(e.to_string()))?;
        (Fields { image: Some(image), labels: vec![], template: j.template, precision: j.precision }, Some(labels))
    } else {
        return Err(ApiError(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send multipart/form-data or application/json".into()));
    };
    let (fields, json_labels) = fields;
    let image = fields.image.filter(|b| !b.is_empty()).ok_or_else(|| bad("no image uploaded"))?;
    if image.len() > s.api.limits.max_upload_bytes {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("image is {} bytes, over the limit of {}", image.len(), s.api.limits.max_upload_bytes),
        ));
    }
    let labels = match json_labels {
        Some(l) => l,
        None => form_labels(&fields.labels).map_err(|e| bad(e.to_string()))?,
    };
    if labels.len() > s.api.limits.max_labels {
        return Err(bad(LabelError::TooMany { count: labels.len(), max: s.api.limits.max_labels }.to_string()));
    }
    let template = match fields.template.as_deref().map(str::trim) {
        None | Some("") => Template::new(DEFAULT_TEMPLATE).expect("valid default"),
        Some(t) => Template::new(t).map_err(|e| bad(e.to_string()))?,
    };
    let classifier = s
        .api
        .classifier
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::FORBIDDEN, "uploads are switched off on this server (http.demo = false)".into()))?;
    let precision = match fields.precision.as_deref().map(str::trim) {
        None | Some("") | Some("auto") => None,
        Some(p) => match p.parse::<PrecisionChoice>().map_err(bad)? {
            PrecisionChoice::Fixed(p) if classifier.precisions.contains(&p) => Some(p),
            PrecisionChoice::Fixed(p) => return Err(bad(format!("this model has no {p} vision tower"))),
            PrecisionChoice::Auto => None,
        },
    };
    let (reply, rx) = oneshot::channel();
    let started = Instant::now();
    let max_pixels = s.api.limits.max_pixels;
    classifier.submit(Job::Classify(ClassifyJob { image, max_pixels, labels, template, precision, reply })).inspect_err(|e| {
        if e.0 == StatusCode::SERVICE_UNAVAILABLE {
            s.metrics.rejected_busy.inc();
        }
    })?;
    let scores = match tokio::time::timeout(s.api.limits.timeout, rx).await {
        Ok(Ok(r)) => r?,
        Ok(Err(_)) => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the classifier stopped".into())),
        Err(_) => return Err(ApiError(StatusCode::GATEWAY_TIMEOUT, "classification timed out".into())),
    };
    s.metrics.latency.observe(started.elapsed().as_secs_f64());
    Ok(Json(vec![ApiResult { image: "upload", scores }]))
}

/// Every `labels` form field, each a comma-separated list, in order.
fn form_labels(fields: &[String]) -> Result<Vec<String>, LabelError> {
    if fields.is_empty() {
        return Err(LabelError::Empty);
    }
    let mut out = Vec::new();
    for f in fields {
        out.extend(parse_list(f)?);
    }
    Ok(out)
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.metrics.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}")).into_response(),
    }
}

/// Refuses a non-loopback bind without a token: camera pictures and labels are private.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && token.is_none_or(|t| t.trim().is_empty()) {
        anyhow::bail!("refusing to serve on {addr} without an access token: set --token (or bind to 127.0.0.1)");
    }
    Ok(())
}

/// `siglipd serve`: the page and API for one model, until Ctrl-C/SIGTERM.
pub fn serve(engine: Engine, addr: SocketAddr, token: Option<String>, limits: Limits) -> anyhow::Result<()> {
    check_bind(&addr, token.as_deref())?;
    let classifier = Some(Arc::new(Classifier::start(engine, &limits)?));
    let app = router(Api { classifier, limits, token, live: None, controls: None, examples: None, sinks: None });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let mut signals = crate::signals::Signals::install().context("cannot install signal handlers")?;
        let listener = bind(addr).await?;
        serve_connections(listener, app, ConnLimits::default(), async move { signals.terminate().await }).await;
        Ok(())
    })
}

/// Binds and says where the page is.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    info!("web page on http://{}/", listener.local_addr()?);
    Ok(listener)
}
