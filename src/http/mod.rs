//! The HTTP server: the demo page (upload an image, type labels, see scores) and a JSON API.
//!
//! Invariants: inference runs on the classifier's own thread, never on the async runtime; at
//! most one classification runs at a time and at most `queue` wait (503 + Retry-After beyond
//! that); bodies, decoded pixels and label counts are bounded; a non-loopback bind requires a
//! bearer token.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::classify::{rank, LabelScore};
use crate::engine::TextSide;
use crate::labels::{parse_list, LabelError, Template, DEFAULT_TEMPLATE};
use crate::model::{preprocess, Bundle, Precision, PrecisionChoice, Preprocessor, Tower, VisionEncoder};

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
        Self {
            max_upload_bytes: 20 << 20,
            max_pixels: 40_000_000,
            max_labels: 100,
            queue: 4,
            timeout: Duration::from_secs(60),
        }
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

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

struct Job {
    image: Vec<u8>,
    labels: Vec<String>,
    template: Template,
    precision: Option<Precision>,
    reply: oneshot::Sender<Result<Vec<LabelScore>, ApiError>>,
}

/// Owns the model on its own thread; handlers talk to it through a bounded channel.
pub struct Classifier {
    tx: SyncSender<Job>,
    pub precisions: Vec<Precision>,
    pub default: Precision,
    pub model: String,
}

/// The worker's state: towers are loaded lazily per precision, label embeddings cached.
struct Worker {
    bundle: Bundle,
    pre: Preprocessor,
    vision: HashMap<Precision, VisionEncoder>,
    text: Option<TextSide>,
    cache: HashMap<String, Vec<f32>>,
}

const CACHE_MAX: usize = 10_000;

impl Worker {
    fn classify(&mut self, job: &Job, default: Precision) -> Result<Vec<LabelScore>, ApiError> {
        let internal = |e: crate::model::ModelError| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        let img = preprocess::decode(&job.image, "the uploaded image", self.pre.max_pixels).map_err(|e| match e {
            preprocess::ImageError::TooLarge { .. } => ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            _ => bad(e.to_string()),
        })?;
        if self.text.is_none() {
            self.text = Some(TextSide::load(&self.bundle, Precision::Fp32).map_err(internal)?);
        }
        let text = self.text.as_mut().expect("loaded above");
        let mut embs = Vec::with_capacity(job.labels.len());
        for label in &job.labels {
            let prompt = job.template.apply(label);
            if !self.cache.contains_key(&prompt) {
                if self.cache.len() >= CACHE_MAX {
                    self.cache.clear();
                }
                let e = text.embed(&prompt).map_err(internal)?;
                self.cache.insert(prompt.clone(), e);
            }
            embs.push((label.clone(), self.cache[&prompt].clone()));
        }
        let precision = job.precision.unwrap_or(default);
        if !self.vision.contains_key(&precision) {
            let v = VisionEncoder::load(&self.bundle, precision).map_err(internal)?;
            self.vision.insert(precision, v);
        }
        let pixels = self.pre.pixels(&img);
        let emb = self.vision.get_mut(&precision).expect("loaded above").embed(&pixels).map_err(internal)?;
        Ok(rank(&self.bundle.calibration(), &emb, &embs))
    }
}

impl Classifier {
    /// Loads the default vision tower and the text side up front (so /healthz means ready),
    /// then serves jobs on a dedicated thread.
    pub fn start(bundle: Bundle, choice: PrecisionChoice, limits: &Limits) -> anyhow::Result<Self> {
        anyhow::ensure!(bundle.has_text(), "model bundle {} has no text tower: the page needs one to score typed labels", bundle.dir.display());
        let (default, why) = bundle.resolve(Tower::Vision, choice)?;
        info!(%default, reason = why, "web classifier precision");
        let mut pre = Preprocessor::new(&bundle.manifest);
        pre.max_pixels = limits.max_pixels;
        let mut vision = HashMap::new();
        vision.insert(default, VisionEncoder::load(&bundle, default)?);
        let text = Some(TextSide::load(&bundle, Precision::Fp32)?);
        let precisions = bundle.precisions(Tower::Vision);
        let model = bundle.manifest.source.clone();
        let mut worker = Worker { bundle, pre, vision, text, cache: HashMap::new() };
        let (tx, rx) = sync_channel::<Job>(limits.queue);
        std::thread::Builder::new().name("http-classify".into()).spawn(move || {
            for job in rx {
                if job.reply.is_closed() {
                    continue; // the client gave up while waiting
                }
                let result = worker.classify(&job, default);
                let _ = job.reply.send(result);
            }
        })?;
        Ok(Self { tx, precisions, default, model })
    }
}

#[derive(Default)]
struct Metrics {
    requests: AtomicU64,
    rejected_busy: AtomicU64,
    failed: AtomicU64,
    /// Latency histogram buckets (seconds) and their counts, plus sum.
    buckets: Mutex<(Vec<u64>, f64, u64)>,
}

const BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Metrics {
    fn observe(&self, secs: f64) {
        let mut b = self.buckets.lock().unwrap();
        if b.0.is_empty() {
            b.0 = vec![0; BUCKETS.len()];
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                b.0[i] += 1;
            }
        }
        b.1 += secs;
        b.2 += 1;
    }
}

#[derive(Clone)]
pub struct AppState {
    classifier: Arc<Classifier>,
    limits: Limits,
    token: Option<String>,
    metrics: Arc<Metrics>,
}

pub fn router(classifier: Arc<Classifier>, limits: Limits, token: Option<String>) -> Router {
    let state = AppState { classifier, limits: limits.clone(), token, metrics: Arc::new(Metrics::default()) };
    let api = Router::new()
        .route("/api/info", get(info_handler))
        .route("/api/classify", post(classify_handler))
        .route("/api/cameras", get(|| async { Json(json!([])) }))
        .route("/metrics", get(metrics_handler))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(api)
        // multipart framing on top of the image itself
        .layer(DefaultBodyLimit::max(limits.max_upload_bytes + 64 * 1024))
        .with_state(state)
}

async fn require_token(State(s): State<AppState>, headers: HeaderMap, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError(StatusCode::UNAUTHORIZED, "missing or wrong access token (Authorization: Bearer …)".into()).into_response();
        }
    }
    next.run(req).await
}

async fn info_handler(State(s): State<AppState>) -> Json<serde_json::Value> {
    let c = &s.classifier;
    Json(json!({
        "precisions": c.precisions.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "default_precision": c.default.as_str(),
        "model": c.model,
        "max_upload_bytes": s.limits.max_upload_bytes,
        "max_labels": s.limits.max_labels,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    /// base64 (optionally a `data:image/...;base64,` URL)
    image: String,
    labels: String,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    precision: Option<String>,
}

struct Fields {
    image: Option<Vec<u8>>,
    labels: Option<String>,
    template: Option<String>,
    precision: Option<String>,
}

async fn read_multipart(mut mp: Multipart) -> Result<Fields, ApiError> {
    let mut f = Fields { image: None, labels: None, template: None, precision: None };
    let upload_err = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, "upload too large".into())
        } else {
            bad(format!("malformed upload: {e}"))
        }
    };
    while let Some(field) = mp.next_field().await.map_err(upload_err)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(upload_err)?;
        let text = || String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("field {name:?} is not UTF-8 text")));
        match name.as_str() {
            "image" => f.image = Some(bytes.to_vec()),
            "labels" => f.labels = Some(text()?),
            "template" => f.template = Some(text()?),
            "precision" => f.precision = Some(text()?),
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
    s.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let result = classify_inner(&s, headers, req).await;
    if result.is_err() {
        s.metrics.failed.fetch_add(1, Ordering::Relaxed);
    }
    result
}

async fn classify_inner(s: &AppState, headers: HeaderMap, req: Request) -> Result<Json<Vec<ApiResult>>, ApiError> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let fields = if ctype.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, &()).await.map_err(|e| bad(e.body_text()))?;
        read_multipart(mp).await?
    } else if ctype.starts_with("application/json") {
        let body = axum::body::to_bytes(req.into_body(), s.limits.max_upload_bytes * 4 / 3 + 4096)
            .await
            .map_err(|_| ApiError(StatusCode::PAYLOAD_TOO_LARGE, "request body too large".into()))?;
        let j: JsonRequest = serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let b64 = j.image.split_once("base64,").map(|(_, d)| d).unwrap_or(&j.image);
        let image = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| bad(format!("image is not valid base64: {e}")))?;
        Fields { image: Some(image), labels: Some(j.labels), template: j.template, precision: j.precision }
    } else {
        return Err(ApiError(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send multipart/form-data or application/json".into()));
    };
    let image = fields.image.filter(|b| !b.is_empty()).ok_or_else(|| bad("no image uploaded"))?;
    if image.len() > s.limits.max_upload_bytes {
        return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("image is {} bytes, over the limit of {}", image.len(), s.limits.max_upload_bytes)));
    }
    let labels = parse_list(fields.labels.as_deref().unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
    if labels.len() > s.limits.max_labels {
        return Err(bad(LabelError::TooMany { count: labels.len(), max: s.limits.max_labels }.to_string()));
    }
    let template = match fields.template.as_deref().map(str::trim) {
        None | Some("") => Template::new(DEFAULT_TEMPLATE).expect("valid default"),
        Some(t) => Template::new(t).map_err(|e| bad(e.to_string()))?,
    };
    let precision = match fields.precision.as_deref().map(str::trim) {
        None | Some("") | Some("auto") => None,
        Some(p) => match p.parse::<PrecisionChoice>().map_err(bad)? {
            PrecisionChoice::Fixed(p) if s.classifier.precisions.contains(&p) => Some(p),
            PrecisionChoice::Fixed(p) => return Err(bad(format!("this model has no {p} vision tower"))),
            PrecisionChoice::Auto => None,
        },
    };
    let (reply, rx) = oneshot::channel();
    let started = Instant::now();
    match s.classifier.tx.try_send(Job { image, labels, template, precision, reply }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            s.metrics.rejected_busy.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "busy: too many classifications waiting, try again shortly".into()));
        }
        Err(TrySendError::Disconnected(_)) => {
            return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the classifier stopped".into()))
        }
    }
    let scores = match tokio::time::timeout(s.limits.timeout, rx).await {
        Ok(Ok(r)) => r?,
        Ok(Err(_)) => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the classifier stopped".into())),
        Err(_) => return Err(ApiError(StatusCode::GATEWAY_TIMEOUT, "classification timed out".into())),
    };
    s.metrics.observe(started.elapsed().as_secs_f64());
    Ok(Json(vec![ApiResult { image: "upload", scores }]))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    let m = &s.metrics;
    let mut out = String::new();
    out += "# HELP siglipd_http_classify_requests_total Classification requests received.\n# TYPE siglipd_http_classify_requests_total counter\n";
    out += &format!("siglipd_http_classify_requests_total {}\n", m.requests.load(Ordering::Relaxed));
    out += "# HELP siglipd_http_classify_failed_total Classification requests answered with an error.\n# TYPE siglipd_http_classify_failed_total counter\n";
    out += &format!("siglipd_http_classify_failed_total {}\n", m.failed.load(Ordering::Relaxed));
    out += "# HELP siglipd_http_classify_busy_total Requests rejected with 503 because the queue was full.\n# TYPE siglipd_http_classify_busy_total counter\n";
    out += &format!("siglipd_http_classify_busy_total {}\n", m.rejected_busy.load(Ordering::Relaxed));
    out += "# HELP siglipd_http_classify_seconds Time from request to scores.\n# TYPE siglipd_http_classify_seconds histogram\n";
    let b = m.buckets.lock().unwrap();
    for (i, le) in BUCKETS.iter().enumerate() {
        out += &format!("siglipd_http_classify_seconds_bucket{{le=\"{le}\"}} {}\n", b.0.get(i).copied().unwrap_or(0));
    }
    out += &format!("siglipd_http_classify_seconds_bucket{{le=\"+Inf\"}} {}\n", b.2);
    out += &format!("siglipd_http_classify_seconds_sum {}\nsiglipd_http_classify_seconds_count {}\n", b.1, b.2);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Refuses a non-loopback bind without a token: camera pictures and labels are private.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && token.is_none_or(|t| t.trim().is_empty()) {
        anyhow::bail!("refusing to serve on {addr} without an access token: set --token (or bind to 127.0.0.1)");
    }
    Ok(())
}

/// `siglipd serve`: the page and API for one model, until Ctrl-C/SIGTERM.
pub fn serve(bundle: Bundle, choice: PrecisionChoice, addr: SocketAddr, token: Option<String>, limits: Limits) -> anyhow::Result<()> {
    check_bind(&addr, token.as_deref())?;
    let classifier = Arc::new(Classifier::start(bundle, choice, &limits)?);
    let app = router(classifier, limits, token);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        info!("serving the demo page on http://{}/", listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
                warn!("stopping the web server");
            })
            .await
            .context("web server failed")
    })
}
